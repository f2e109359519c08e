"""Ctrl-C in `qwen3-asr-stream stream`: the audio ends there and the last final comes; a second Ctrl-C quits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from typing import Callable

import grpc
import numpy as np
import pytest
import soundfile

from conftest import ROOT, on_server_loop, wait_until
from qwen3_asr_client.proto import asr_pb2_grpc

pytest.importorskip("webrtcvad")
from qwen3_asr_stream.testing.harness import ServerThread, load_engine  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

SECONDS = 12.0


@pytest.fixture(scope="module")
def voiced_wav(tmp_path_factory):
    """12 s of a 150 Hz sawtooth: one long utterance for the VAD."""
    t = np.arange(int(SECONDS * 16000)) / 16000
    path = tmp_path_factory.mktemp("interrupt") / "voiced.wav"
    soundfile.write(str(path), (0.3 * (2 * ((150 * t) % 1) - 1)).astype(np.float32), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def server(checkpoints):
    engine = load_engine(str(checkpoints["asr"]), ServerOptions())
    with ServerThread(ServerOptions(port=0), {"tiny": engine}) as server:
        yield server
    engine.close()


class BlackHole(asr_pb2_grpc.SpeechRecognitionServicer):
    """A server that reads every request and never answers: the last final never comes."""

    def __init__(self):
        self.release = threading.Event()
        self.half_closed = threading.Event()
        self.received = 0  # requests read

    def StreamingRecognize(self, requests, context):
        for _ in requests:
            self.received += 1
        self.half_closed.set()
        self.release.wait(60)
        return iter(())


def start_cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "service"), str(ROOT / "client")]))
    return subprocess.Popen([sys.executable, "-m", "qwen3_asr_client.cli", "stream", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_streaming(process: subprocess.Popen, streaming: Callable[[], bool]) -> None:
    """Wait until the client streams (``streaming()``; its imports take a moment), still running."""
    wait_until(lambda: streaming() or process.poll() is not None, timeout=60, what="the client streaming")
    assert process.poll() is None, process.communicate()


def received_ms(server) -> int:
    """The most audio any of the server's calls has received, ms."""
    return on_server_loop(server, lambda: max((s.received_ms for s in server.server.calls.sessions), default=0))


def test_ctrl_c_ends_the_audio_and_waits_for_the_last_final(server, voiced_wav):
    process = start_cli(str(voiced_wav), "--server", server.address, "--realtime", "--json", "--no-word-timestamps")
    wait_streaming(process, lambda: received_ms(server) >= 2500)  # 2.5 s into the file, in real time
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert time.monotonic() - interrupted < SECONDS - 4.0  # it did not stream the rest of the file
    assert "stopping: the audio ends here; waiting for the last final result" in err
    results = [r for line in out.splitlines() for r in json.loads(line).get("results", [])]
    finals = [r for r in results if r.get("is_final")]
    assert len(finals) == 1, out
    assert finals[0]["end_reason"] == "END_OF_STREAM"
    assert 1000 < finals[0]["result_end_offset_ms"] < (SECONDS - 2) * 1000


def test_a_second_ctrl_c_quits_at_once(voiced_wav):
    hole = BlackHole()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    asr_pb2_grpc.add_SpeechRecognitionServicer_to_server(hole, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        process = start_cli(str(voiced_wav), "--server", f"127.0.0.1:{port}", "--realtime")
        wait_streaming(process, lambda: hole.received >= 5)  # the configuration and audio
        process.send_signal(signal.SIGINT)
        assert hole.half_closed.wait(10), "the first Ctrl-C did not end the audio"
        time.sleep(1.0)
        assert process.poll() is None, "the first Ctrl-C must wait for the last final"
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
        assert process.returncode == 130
    finally:
        hole.release.set()
        grpc_server.stop(0)
