"""qwen3_asr_client.resilience against a real server: a start refused because the server is
full is retried with back-off and then served; a stream that is never let in gives up
with the server's status after its attempts; the replay buffer keeps what is
unacknowledged and no more. (Resuming after a dropped replica is tested through the
proxies in test_proxies.py.)"""

from __future__ import annotations

import asyncio
import random
import time

import grpc
import grpc.aio
import numpy as np
import pytest

from qwen3_asr_client import AsyncStreamingClient, AudioFormat, RecognitionOptions
from qwen3_asr_client.resilience import ResumableStream, RetryPolicy
from qwen3_asr_stream.testing.harness import ServerThread, load_engine
from qwen3_asr_stream.server.options import ServerOptions

from conftest import synthesize, wait_until_async

RATE = 16000
FAST = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=0.4, attempts=20)
OPTIONS = RecognitionOptions(language="English", word_timestamps=False)


@pytest.fixture(scope="module")
def speech(espeak, tmp_path_factory) -> bytes:
    import soundfile
    import soxr

    path = synthesize(espeak, "the quick brown fox", tmp_path_factory.mktemp("speech") / "p.wav")
    samples, rate = soundfile.read(path, dtype="float32")
    samples = soxr.resample(samples, rate, RATE)
    silence = np.zeros(RATE // 2, np.float32)
    return (np.concatenate([silence, samples, silence, silence]) * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def one_stream_server(checkpoints):
    """A server that admits one stream at a time."""
    options = ServerOptions(port=0, max_streams=1)
    engine = load_engine(str(checkpoints["asr"]), options)
    with ServerThread(options, {"tiny": engine}) as server:
        yield server
    engine.close()


def chunks(audio: bytes, realtime: bool):
    async def gen():
        t0 = time.monotonic()
        for i in range(0, len(audio), 3200):
            if realtime:
                await asyncio.sleep(max(0.0, t0 + i / (2 * RATE) - time.monotonic()))
            yield audio[i:i + 3200]
    return gen()


async def occupy(address: str, audio: bytes) -> list:
    async with AsyncStreamingClient(address) as client:
        return [i async for i in client.stream(chunks(audio, True), AudioFormat(RATE), OPTIONS)]


def test_a_refused_start_is_retried_with_backoff_until_served(one_stream_server, speech):
    async def scenario():
        first = asyncio.create_task(occupy(one_stream_server.address, speech))
        await wait_until_async(lambda: one_stream_server.server.calls.active == 1, what="the first stream admitted")
        async with AsyncStreamingClient(one_stream_server.address) as client:
            stream = ResumableStream(client, AudioFormat(RATE), OPTIONS, policy=FAST)
            items = [i async for i in stream.run(chunks(speech, False))]
        return stream, items, await first

    stream, items, first = asyncio.run(scenario())
    assert stream.refusals >= 2 and stream.calls == stream.refusals + 1 and stream.resumes == 0
    finals = [i for i in items if getattr(i, "is_final", False)]
    assert len(finals) == 1 and [f.utterance_index for f in finals] == [0]
    assert len([i for i in first if getattr(i, "is_final", False)]) == 1


def test_a_start_refused_every_time_raises_the_servers_status(one_stream_server, speech):
    async def scenario():
        first = asyncio.create_task(occupy(one_stream_server.address, speech))
        await wait_until_async(lambda: one_stream_server.server.calls.active == 1, what="the first stream admitted")
        started = time.monotonic()
        policy = RetryPolicy(attempts=3, initial_backoff_s=0.1, max_backoff_s=0.2, jitter=0.0)
        async with AsyncStreamingClient(one_stream_server.address) as client:
            stream = ResumableStream(client, AudioFormat(RATE), OPTIONS, policy=policy)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in stream.run(chunks(speech, False)):
                    pass
        waited = time.monotonic() - started
        await first
        return stream, error.value, waited

    stream, error, waited = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in error.details()
    assert stream.calls == 3 and stream.refusals == 3
    assert waited >= 0.1 + 0.2  # two back-offs


def test_backoff_grows_to_its_cap_with_jitter():
    policy = RetryPolicy(initial_backoff_s=0.2, max_backoff_s=1.0, multiplier=2.0, jitter=0.25)
    rng = random.Random(7)
    waits = [policy.backoff_s(n, rng) for n in range(1, 7)]
    for n, wait in enumerate(waits, 1):
        base = min(1.0, 0.2 * 2 ** (n - 1))
        assert 0.75 * base <= wait <= 1.25 * base
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff_s=2.0, max_backoff_s=1.0)


def test_the_replay_buffer_keeps_only_unacknowledged_audio():
    fmt = AudioFormat(RATE)
    stream = ResumableStream(AsyncStreamingClient("127.0.0.1:1"), fmt, max_replay_s=2.0)
    stream._add(bytes(fmt.bytes_per_second))  # 1 s
    stream._acknowledge(600)  # a final ended at 0.6 s
    assert stream._buffer_start == fmt.bytes_per_second * 6 // 10 and len(stream._buffer) == fmt.bytes_per_second * 4 // 10
    stream._add(bytes(2 * fmt.bytes_per_second))  # 2.4 s unacknowledged > 2 s
    assert len(stream._buffer) == 2 * fmt.bytes_per_second and stream.lost_ms == 400
    stream._acknowledge(100)  # an older point changes nothing
    assert stream.acked_ms == 600 and len(stream._buffer) == 2 * fmt.bytes_per_second
    with pytest.raises(TypeError):
        stream._add("not audio")
