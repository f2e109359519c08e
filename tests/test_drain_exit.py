"""The drain ends right after the last call: a SIGTERM'd replica must not sit out its grace.

Clients that leave something open when their call has ended (a WebSocket whose client never
answers the close, an upload still being read, a gRPC connection without calls) made the
server wait: aiohttp's close handshake (10 s) and handler shutdown (60 s), gRPC's grace.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time

import aiohttp
import grpc
import pytest

from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc
from qwen3_asr_stream.server.options import ServerOptions
from qwen3_asr_stream.testing.harness import ServerThread

from conftest import form_body, free_port, request_head, wav_bytes, white_noise

pytest.importorskip("webrtcvad")

RUNS = 20
GRACE_S = 4.0


def test_the_drain_ends_within_a_second_of_the_last_call(engine, caplog):
    caplog.set_level(logging.INFO, logger="qwen3_asr_stream.session.calls")
    body = form_body(wav_bytes(white_noise(0.5)))
    session = {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000},
                                                            "turn_detection": {"type": "server_vad"}}}}

    def one_run() -> tuple[float, float]:
        server = ServerThread(ServerOptions(port=0, http_port=free_port(), grace_s=GRACE_S, idle_timeout_s=30.0),
                              {"tiny": engine}).start()
        port = server.server.http_port

        async def main():
            async with aiohttp.ClientSession() as http, grpc.aio.insecure_channel(server.address) as channel:
                await asr_pb2_grpc.SpeechRecognitionStub(channel).GetSpeechRecognitionConfig(
                    asr_pb2.GetSpeechRecognitionConfigRequest())  # a gRPC connection, left open without calls
                sockets = []
                for _ in range(2):  # WebSocket clients that stop reading: they never answer the close
                    ws = await http.ws_connect(f"ws://127.0.0.1:{port}/v1/realtime?intent=transcription")
                    await ws.send_json({"type": "session.update", "session": session})
                    await ws.send_json({"type": "input_audio_buffer.append",
                                        "audio": base64.b64encode(bytes(6400)).decode()})
                    sockets.append(ws)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)  # an upload that stalls
                writer.write(request_head(port, len(body)) + body[:len(body) // 3])
                await writer.drain()
                await asyncio.sleep(0.3)
                await asyncio.get_running_loop().run_in_executor(None, server.stop)
                stopped = time.time()
                writer.close()
                return stopped

        mark = len(caplog.records)
        stopped = asyncio.run(main())
        ends = [r.created for r in caplog.records[mark:] if re.match(r"stream \d+ protocol=openai.realtime",
                                                                   r.getMessage())]
        assert len(ends) == 2, [r.getMessage() for r in caplog.records[mark:]]
        return max(ends), stopped

    started = time.monotonic()
    for run in range(RUNS):
        last_end, stopped = one_run()
        assert stopped - last_end < 1.0, f"run {run}: the stop ended {stopped - last_end:.2f} s after the last call"
    assert time.monotonic() - started < RUNS * GRACE_S / 2  # nobody sat out a grace
