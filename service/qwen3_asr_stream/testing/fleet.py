"""Real replicas behind real proxies on loopback, for the scale-out tests and benchmark.

    replicas = [Replica(model_dir, log_dir=tmp).start() for _ in range(3)]
    for r in replicas: r.wait_ready()
    proxy = Nginx(replicas, tmp / "nginx").start()      # or HAProxy(...)
    ... connect to proxy.address ...
    replicas[0].terminate(); replicas[0].wait(20)        # SIGTERM: drain, exit 0

A ``Replica`` is a ``qwen3-asr-stream serve`` process (the installed command);
``Nginx`` and ``HAProxy`` run Debian's binaries in the foreground with the shipped
configurations from ``deploy/proxies``, changed only in the listen address and the
list of replicas.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROXIES = ROOT / "deploy" / "proxies"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def serve_command() -> list[str]:
    exe = Path(sys.executable).with_name("qwen3-asr-stream")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "qwen3_asr_client.cli"]


class Replica:
    """One ``qwen3-asr-stream serve`` process on its own gRPC and metrics ports."""

    def __init__(self, model: Path | str, log_dir: Path, *, grace_s: float = 8.0, args: tuple[str, ...] = (),
                 name: str | None = None) -> None:
        self.model, self.grace_s, self.args = str(model), grace_s, tuple(args)
        self.port, self.metrics_port = free_port(), free_port()
        self.name = name or f"replica-{self.port}"
        self.log_path = Path(log_dir) / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> "Replica":
        """Start (or restart, on the same ports: as a supervisor would) the process; see wait_ready()."""
        assert self.process is None or self.process.poll() is not None, "already running"
        command = [*serve_command(), "serve", "--model", self.model, "--no-aligner", "--device", "cpu",
                   "--host", HOST, "--port", str(self.port), "--metrics-port", str(self.metrics_port),
                   "--http-port", "0", "--grace", str(self.grace_s), *self.args]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.starts += 1
        return self

    def wait_ready(self, timeout: float = 120.0) -> "Replica":
        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            return self.probe("/readyz") == 200

        wait_for(ready, timeout, f"{self.name} to be ready", 0.2)
        return self

    def probe(self, path: str) -> int:
        return http_get(f"http://{HOST}:{self.metrics_port}{path}")[0]

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        status, text = http_get(f"http://{HOST}:{self.metrics_port}/metrics")
        if status != 200:
            raise RuntimeError(f"{self.name}: /metrics answered {status}")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*?)\}})? (\S+)$", re.M)
        for found, value in pattern.findall(text):
            if ",".join(sorted(found.split(","))) == want or (not want and not found):
                return float(value)
        return 0.0

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""


class _Proxy:
    exe = ""
    template = ""

    def __init__(self, replicas: list[Replica], workdir: Path) -> None:
        self.replicas = replicas
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "proxy.log"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def config(self) -> str:
        """The shipped configuration with this listen port and these replicas."""
        raise NotImplementedError

    def command(self, config_path: Path) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 20.0) -> "_Proxy":
        exe = shutil.which(self.exe) or shutil.which(self.exe, path="/usr/sbin:/usr/local/sbin:/sbin")
        if exe is None:
            raise FileNotFoundError(f"{self.exe} is not installed (apt-get install {self.exe}; .ci/run does)")
        path = self.write_config()
        log = open(self.log_path, "a")
        self.process = subprocess.Popen([exe, *self.command(path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def listening():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.exe} exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            with socket.socket() as s:
                return s.connect_ex((HOST, self.port)) == 0

        wait_for(listening, timeout, f"{self.exe} to listen")
        return self

    def write_config(self) -> Path:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _substitute_once(pattern: str, replacement: str, text: str, what: str) -> str:
    """``text`` with the one match of ``pattern`` replaced (a shipped configuration we fill in)."""
    text, n = re.subn(pattern, replacement, text)
    assert n == 1, f"expected {what}; the file changed"
    return text


class Nginx(_Proxy):
    exe = "nginx"
    template = "nginx-grpc.conf"

    def config(self) -> str:
        text = (PROXIES / self.template).read_text()
        servers = "".join(f"    server {r.address} max_fails=1 fail_timeout=10s;\n" for r in self.replicas)
        text = _substitute_once(r"(upstream qwen3_asr \{\n    least_conn;\n)(?:    server .*\n)+", rf"\g<1>{servers}",
                                text, "the shipped nginx configuration's upstream block")
        return _substitute_once(r"listen \S+ http2;", f"listen {self.address} http2;", text,
                                "one 'listen ... http2' in the shipped nginx configuration")

    def write_config(self) -> Path:
        site = self.workdir / "asr-grpc.conf"
        site.write_text(self.config())
        main = self.workdir / "nginx.conf"
        # what Debian's /etc/nginx/nginx.conf provides around a conf.d file, for an unprivileged foreground run
        main.write_text(f"pid {self.workdir}/nginx.pid;\nerror_log stderr warn;\nworker_processes 1;\n"
                        f"events {{ worker_connections 4096; }}\n"
                        f"http {{\n  access_log off;\n  client_body_temp_path {self.workdir}/body;\n"
                        f"  include {site};\n}}\n")
        return main

    def command(self, config_path: Path) -> list[str]:
        return ["-p", str(self.workdir), "-c", str(config_path), "-e", "stderr", "-g", "daemon off;"]


class HAProxy(_Proxy):
    exe = "haproxy"
    template = "haproxy.cfg"

    def config(self) -> str:
        text = (PROXIES / self.template).read_text()
        servers = "".join(f"    server r{i} {r.address} port {r.metrics_port}\n"
                          for i, r in enumerate(self.replicas, 1))
        text = _substitute_once(r"(?:    server r\d+ .*\n)+", servers, text,
                                "the server lines of the shipped HAProxy configuration")
        return _substitute_once(r"bind \S+ proto h2", f"bind {self.address} proto h2", text,
                                "one 'bind ... proto h2' in the shipped HAProxy configuration")

    def write_config(self) -> Path:
        path = self.workdir / "haproxy.cfg"
        path.write_text(self.config())
        return path

    def command(self, config_path: Path) -> list[str]:
        return ["-db", "-f", str(config_path)]
