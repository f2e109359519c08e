"""`qwen3-asr-stream serve` as a process: serves, and stops gracefully on SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
import urllib.request

import grpc
import pytest

from conftest import serve
from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc

pytest.importorskip("webrtcvad")


def test_bad_option_exits_with_the_reason():
    process = serve("--max-streams", "0", "--no-aligner")
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 2 and "max_streams must be at least 1" in out


@pytest.mark.slow
def test_serve_then_sigterm(checkpoints):
    with socket.socket() as s:  # a free HTTP port, to ask /readyz there
        s.bind(("127.0.0.1", 0))
        http_port = s.getsockname()[1]
    process = serve("--model", str(checkpoints["asr"]), "--aligner", str(checkpoints["aligner"]),
                    "--port", "0", "--device", "cpu", "--grace", "5", "--http-port", str(http_port))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        deadline, port = time.monotonic() + 120, None
        while port is None and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
            found = [re.search(r"on 127\.0\.0\.1:(\d+)", line) for line in list(lines)]
            port = next((int(m.group(1)) for m in found if m), None)
        assert port, "".join(lines)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = asr_pb2_grpc.SpeechRecognitionStub(channel)
            config = stub.GetSpeechRecognitionConfig(asr_pb2.GetSpeechRecognitionConfigRequest(), timeout=10)
        assert [m.name for m in config.models] == ["asr"] and config.models[0].word_time_offsets
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=10) as ready:
            assert ready.status == 200 and ready.read().decode().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    text = "".join(lines)
    assert "received SIGTERM" in text and "stopped" in text
