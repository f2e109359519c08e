"""Streams the server refuses get the server's status at a raw grpc.aio client, every time.

A grpc.aio client whose write fails because the server already ended the call
reports INTERNAL instead of the server's status (grpc/grpc#36066). The server
reads a refused stream's in-flight requests first (token check, full server,
draining server, bad configuration), so many concurrent raw asyncio clients that
keep writing all see the real status.
"""

from __future__ import annotations

import asyncio
import collections

import grpc
import grpc.aio
import pytest

from test_server_e2e import engine  # noqa: F401 - module fixture shared with the e2e tests

pytest.importorskip("webrtcvad")
from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc  # noqa: E402
from qwen3_asr_stream.server.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

CLIENTS = 40
CHUNK = b"\0" * 3200  # 100 ms of 16 kHz 16-bit silence


def config(**fields) -> asr_pb2.StreamingRecognizeRequest:
    request = asr_pb2.StreamingRecognizeRequest(streaming_config=asr_pb2.StreamingRecognitionConfig(
        config=asr_pb2.RecognitionConfig(encoding=asr_pb2.LINEAR_PCM, sample_rate_hertz=16000)))
    for name, value in fields.items():
        setattr(request.streaming_config.config, name, value)
    return request


async def one_client(address: str, first, metadata=()) -> grpc.StatusCode:
    """A raw asyncio client writing config + 500 ms of audio (10 ms apart), then half-closing."""
    async def requests():
        yield first
        for _ in range(5):
            yield asr_pb2.StreamingRecognizeRequest(audio_content=CHUNK)
            await asyncio.sleep(0.01)

    async with grpc.aio.insecure_channel(address) as channel:
        call = asr_pb2_grpc.SpeechRecognitionStub(channel).StreamingRecognize(requests(), metadata=metadata)
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as error:
            return error.code()
        return await call.code()


def many(address: str, first, metadata=()) -> collections.Counter:
    async def run():
        return await asyncio.gather(*[one_client(address, first, metadata) for _ in range(CLIENTS)])
    return collections.Counter(asyncio.run(run()))


def test_wrong_token_is_unauthenticated_every_time(engine):
    with ServerThread(ServerOptions(port=0, auth_token="secret", max_streams=64), {"tiny": engine}) as server:
        assert many(server.address, config(), [("authorization", "Bearer wrong")]) == {
            grpc.StatusCode.UNAUTHENTICATED: CLIENTS}
        assert many(server.address, config()) == {grpc.StatusCode.UNAUTHENTICATED: CLIENTS}


def test_bad_configuration_is_invalid_argument_every_time(engine):
    with ServerThread(ServerOptions(port=0, max_streams=64), {"tiny": engine}) as server:
        assert many(server.address, config(language_code="Klingon")) == {grpc.StatusCode.INVALID_ARGUMENT: CLIENTS}


def test_full_server_is_resource_exhausted_every_time(engine):
    with ServerThread(ServerOptions(port=0, max_streams=1, idle_timeout_s=30), {"tiny": engine}) as server:
        async def run():
            async def holder_requests():
                yield config()
                while True:
                    yield asr_pb2.StreamingRecognizeRequest(audio_content=CHUNK)
                    await asyncio.sleep(0.1)

            async with grpc.aio.insecure_channel(server.address) as channel:
                holder = asr_pb2_grpc.SpeechRecognitionStub(channel).StreamingRecognize(holder_requests())
                while server.server.calls.active < 1:
                    await asyncio.sleep(0.02)
                codes = await asyncio.gather(*[one_client(server.address, config()) for _ in range(CLIENTS)])
                holder.cancel()
                return collections.Counter(codes)

        assert asyncio.run(run()) == {grpc.StatusCode.RESOURCE_EXHAUSTED: CLIENTS}


def test_draining_server_is_unavailable_every_time(engine):
    server = ServerThread(ServerOptions(port=0, max_streams=64, grace_s=30), {"tiny": engine}).start()
    try:
        async def run():
            async def holder_requests():  # keeps speaking silence: the drain waits for it
                yield config()
                while True:
                    yield asr_pb2.StreamingRecognizeRequest(audio_content=CHUNK)
                    await asyncio.sleep(0.1)

            async with grpc.aio.insecure_channel(server.address) as channel:
                holder = asr_pb2_grpc.SpeechRecognitionStub(channel).StreamingRecognize(holder_requests())
                while server.server.calls.active < 1:
                    await asyncio.sleep(0.02)
                stopping = asyncio.ensure_future(asyncio.to_thread(server.stop))
                while not server.server.calls.draining:
                    await asyncio.sleep(0.01)
                codes = await asyncio.gather(*[one_client(server.address, config()) for _ in range(CLIENTS)])
                holder.cancel()
                await stopping
                return collections.Counter(codes)

        assert asyncio.run(run()) == {grpc.StatusCode.UNAVAILABLE: CLIENTS}
    finally:
        server.stop()
