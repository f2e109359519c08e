"""Bytes that are not a valid message: a status that blames the request, one log line, no traceback."""

from __future__ import annotations

import logging

import grpc
import pytest


pytest.importorskip("webrtcvad")
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field tag with an invalid wire type
METHODS = ["/asr.v1.SpeechRecognition/Recognize", "/asr.v1.SpeechRecognition/StreamingRecognize",
           "/asr.v1.SpeechRecognition/GetSpeechRecognitionConfig"]


@pytest.fixture(scope="module")
def server(engine):
    with ServerThread(ServerOptions(port=0), {"tiny": engine}) as server:
        yield server


def send_raw(address: str, method: str, streaming: bool) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        try:
            if streaming:
                call = channel.stream_stream(method)
                list(call(iter([GARBAGE]), timeout=10))
            else:
                channel.unary_unary(method)(GARBAGE, timeout=10)
        except grpc.RpcError as error:
            return error
    raise AssertionError("the server accepted bytes that are not a message")


def test_malformed_requests_are_invalid_argument_with_one_log_line(server, caplog):
    caplog.set_level(logging.INFO)
    for _ in range(5):
        for method in METHODS:
            error = send_raw(server.address, method, streaming="Streaming" in method)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, error.details())
            assert "not a valid" in error.details() and "message" in error.details()
    malformed = [r for r in caplog.records if "malformed request" in r.getMessage()]
    assert len(malformed) == 1, [r.getMessage() for r in malformed]  # rate-limited
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], \
        [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
