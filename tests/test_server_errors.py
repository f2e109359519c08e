"""Bad input and misbehaving clients, each while other streams run and must still get their finals."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
import numpy as np
import pytest

from qwen3_asr_client import AsyncStreamingClient, AudioFormat, RecognitionOptions
from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc
from conftest import (asr_audio as audio, asr_config as config, call_status, call_status_sync, collect, compose, finals,
                      wait_until, wait_until_async)

pytest.importorskip("webrtcvad")
from qwen3_asr_stream.testing.harness import ServerThread, load_engine  # noqa: E402
from qwen3_asr_stream.server.options import KIB, ServerOptions  # noqa: E402

CODE = grpc.StatusCode
OPTIONS = ServerOptions(port=0, max_streams=8, idle_timeout_s=2.0, max_recognize_bytes=256 * KIB,
                        max_queued_responses=8)


@pytest.fixture(scope="module")
def server(engine, aligner):
    with ServerThread(OPTIONS, {"tiny": engine}, aligner) as server:
        yield server


@pytest.fixture(scope="module")
def speech(phrases):
    a, _, rate = phrases
    return compose([a], rate)


def control(kind) -> asr_pb2.StreamingRecognizeRequest:
    return asr_pb2.StreamingRecognizeRequest(control=asr_pb2.Control(kind=kind))


async def good_stream(address: str, speech) -> list:
    async def paced():
        for chunk in speech.chunks(100):
            yield chunk
            await asyncio.sleep(0.02)
    return await collect(address, paced(), speech.format, RecognitionOptions(interim_results=True,
                                                                             update_interval_ms=500))


def alongside(server, speech, bad, others: int = 2):
    """Run ``bad()`` while ``others`` good streams run; they must each get their one final."""
    async def run():
        active = server.server.calls.active
        good = [asyncio.ensure_future(good_stream(server.address, speech)) for _ in range(others)]
        await wait_until_async(lambda: server.server.calls.active >= active + others, what="the good streams admitted")
        try:
            outcome = await bad()
        finally:
            results = await asyncio.gather(*good)
        for items in results:
            assert len(finals(items)) == 1, items
        return outcome
    return asyncio.run(run())


BAD_CONFIGS = {
    "unknown encoding": ({"encoding": 99}, "encoding"),
    "negative sample rate": ({"sample_rate_hertz": -1}, "sample rate"),
    "1 MHz sample rate": ({"sample_rate_hertz": 1_000_000}, "8000-48000"),
    "nine channels": ({"audio_channel_count": 9}, "channels"),
    "unknown language": ({"language_code": "Klingon"}, "unknown language"),
    "unknown model": ({"model": "no-such-model"}, "unknown model"),
    "context too long": ({"context": "x" * 5000}, "context"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configuration(server, speech, case):
    fields, words = BAD_CONFIGS[case]
    code, details, responses = alongside(server, speech, lambda: call_status(
        server.address, [config(**fields), audio(b"\0" * 3200)]))
    assert (code, responses) == (CODE.INVALID_ARGUMENT, []), details
    assert words in details


def bad_streaming_config(**fields):
    request = config()
    for name, value in fields.items():
        setattr(request.streaming_config, name, value)
    return request


def test_bad_endpointing_and_cadence(server, speech):
    frame = config()
    frame.streaming_config.config.endpointing.frame_ms = 25
    too_long = config()
    too_long.streaming_config.config.endpointing.max_utterance_ms = 10 * 60 * 1000

    async def bad():
        return [await call_status(server.address, [request]) for request in
                (frame, too_long, bad_streaming_config(update_interval_ms=50))]

    (c1, d1, _), (c2, d2, _), (c3, d3, _) = alongside(server, speech, bad)
    assert (c1, c2, c3) == (CODE.INVALID_ARGUMENT,) * 3
    assert "frame_ms" in d1 and "max_utterance_ms" in d2 and "update_interval_ms" in d3


PROTOCOL_ERRORS = {
    "audio before config": ([audio(b"\0" * 320)], "first request must carry streaming_config"),
    "config twice": ([config(), audio(b"\0" * 320), config()], "only in the first request"),
    "unspecified control": ([config(), control(asr_pb2.Control.KIND_UNSPECIFIED)], "control kind"),
    "empty request": ([config(), asr_pb2.StreamingRecognizeRequest()], "empty request"),
    "no config at all": ([], "before its configuration"),
    "partial sample at half-close": ([config(), audio(b"\0" * 3201)], "whole frame"),
    "NaN samples": ([config(AudioFormat(16000, encoding="FLOAT32")),
                     audio(np.array([0.1, np.nan, 0.2] * 100, "<f4").tobytes())], "NaN"),
}


@pytest.mark.parametrize("case", sorted(PROTOCOL_ERRORS))
def test_protocol_errors(server, speech, case):
    requests, words = PROTOCOL_ERRORS[case]
    code, details, _ = alongside(server, speech, lambda: call_status(server.address, requests))
    assert code == CODE.INVALID_ARGUMENT, details
    assert words in details


def test_odd_byte_counts_mid_stream_are_carried(server, speech):
    """Chunks that split samples give the same events and offsets as whole-sample chunks."""
    data = speech.pcm.tobytes()
    fmt_config = config(speech.format)

    def run(step):
        requests = [fmt_config, *(audio(data[i : i + step]) for i in range(0, len(data), step))]
        return call_status(server.address, requests)

    async def both():
        return await run(4410), await run(1103)

    (c1, _, even), (c2, _, odd) = alongside(server, speech, both)
    assert c1 == c2 == CODE.OK
    events = lambda rs: [(r.speech_event.type, r.speech_event.offset_ms) for r in rs if r.HasField("speech_event")]
    offsets = lambda rs: [(r.results[0].result_start_offset_ms, r.results[0].result_end_offset_ms)
                          for r in rs if r.results]
    assert events(even) == events(odd) and len(events(even)) == 2
    assert offsets(even) == offsets(odd)


def test_sample_rate_zero_is_rejected(server, speech):
    code, details, responses = alongside(server, speech, lambda: call_status(
        server.address, [config(sample_rate_hertz=0), audio(b"\0" * 3200)]))
    assert code == CODE.INVALID_ARGUMENT and "sample_rate_hertz is not set" in details


def test_oversize_messages(server, speech):
    limit = OPTIONS.receive_limit_bytes

    async def bad():
        over_grpc = await call_status(server.address, [config(), audio(b"\0" * (limit + 2))])
        over_ours = await call_status(server.address, [config(), audio(b"\0" * (OPTIONS.max_message_bytes + 2))])
        async with AsyncStreamingClient(server.address) as c:
            with pytest.raises(grpc.aio.AioRpcError) as unary:
                await c.recognize(b"\0" * (OPTIONS.max_recognize_bytes + 2), AudioFormat(16000))
        return over_grpc, over_ours, unary.value

    (c1, d1, _), (c2, d2, _), unary = alongside(server, speech, bad)
    assert c1 == CODE.RESOURCE_EXHAUSTED, d1  # gRPC's own receive limit
    assert c2 == CODE.RESOURCE_EXHAUSTED and "exceeds the limit" in d2
    assert unary.code() == CODE.RESOURCE_EXHAUSTED and "Recognize limit" in unary.details()


def test_recognize_bad_audio(server, speech):
    async def bad():
        async with AsyncStreamingClient(server.address) as c:
            with pytest.raises(grpc.aio.AioRpcError) as odd:
                await c.recognize(b"\0" * 3201, AudioFormat(16000))
            with pytest.raises(grpc.aio.AioRpcError) as rate:
                await c.recognize(b"\0" * 3200, AudioFormat(1_000_000))
        return odd.value, rate.value

    odd, rate = alongside(server, speech, bad)
    assert odd.code() == rate.code() == CODE.INVALID_ARGUMENT


def test_stream_too_long(engine, speech, phrases):
    """OUT_OF_RANGE once the audio passes the limit; the utterance in progress still gets its final."""
    a, _, rate = phrases
    long_speech = compose([a, a], rate)  # 9.3 s, the second phrase from 4.9 s to 8.1 s
    with ServerThread(ServerOptions(port=0, max_stream_seconds=6), {"tiny": engine}) as server:
        data = long_speech.pcm.tobytes()
        step = long_speech.format.chunk_bytes(100)
        requests = [config(long_speech.format), *(audio(data[i : i + step]) for i in range(0, len(data), step))]
        code, details, responses = alongside(server, speech, lambda: call_status(server.address, requests))
    assert code == CODE.OUT_OF_RANGE and "maximum of 6 s" in details
    results = [r.results[0] for r in responses if r.results]
    assert [(r.utterance_index, r.is_final, r.end_reason) for r in results] == [
        (0, True, asr_pb2.SILENCE), (1, True, asr_pb2.END_OF_STREAM)]
    assert 5000 < results[1].result_end_offset_ms <= 6000


def test_idle_stream(server, speech):
    """A client that stops sending mid-utterance: its final, then DEADLINE_EXCEEDED."""
    chunks = speech.chunks(100)[:20]  # 2 s: into the phrase

    def requests():
        yield config(speech.format)
        yield from map(audio, chunks)
        time.sleep(OPTIONS.idle_timeout_s + 2)  # then nothing, without closing

    async def bad():
        return await asyncio.to_thread(call_status_sync, server.address, requests())

    code, details, responses = alongside(server, speech, bad)
    assert code == CODE.DEADLINE_EXCEEDED and "no audio for" in details
    assert [r.results[0].is_final for r in responses if r.results] == [True]


def test_client_cancels_mid_utterance(server, speech, engine):
    async def bad():
        async with AsyncStreamingClient(server.address) as c:
            stream = await c.open_stream(speech.format, RecognitionOptions(interim_results=True,
                                                                           update_interval_ms=200))
            for chunk in speech.chunks(100)[:15]:
                await stream.send_audio(chunk)
            it = stream.__aiter__()
            first = await it.__anext__()  # speech started: an engine utterance is open
            assert first.type == "start"
            stream.cancel()
        return first

    alongside(server, speech, bad)
    wait_until(lambda: not server.server.calls.active and not engine.stats().open_utterances, timeout=5,
               what="the cancelled call released")
    assert server.server.calls.active == 0 and not server.server.calls.sessions
    assert engine.stats().open_utterances == 0


def test_client_that_never_reads(server, speech, engine, phrases):
    """Responses nobody reads stay bounded (gRPC's flow-control window plus the session's queue);
    once sending has been blocked for the idle timeout the server releases the stream, and the
    other streams are served all along."""
    a, _, rate = phrases
    long_speech = compose([a] * 15, rate)
    data = long_speech.pcm.tobytes()
    step = long_speech.format.chunk_bytes(100)

    async def bad():
        # A small receive window, so that the unread responses fill it soon.
        options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 4096)]
        async with grpc.aio.insecure_channel(server.address, options=options) as channel:
            call = asr_pb2_grpc.SpeechRecognitionStub(channel).StreamingRecognize()
            first = RecognitionOptions(interim_results=True, update_interval_ms=100).streaming_request(
                long_speech.format)

            async def write():
                with contextlib.suppress(Exception):
                    await call.write(first)
                    for i in range(0, len(data), step):
                        await call.write(audio(data[i : i + step]))

            writer = asyncio.ensure_future(write())
            session, high_water = None, 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                ours = [s for s in server.server.calls.sessions if s.settings.update_interval_ms == 100]
                if ours:
                    session = ours[0]
                    high_water = max(high_water, len(session.outbox))
                elif session is not None:
                    break  # released by the server, while the client still holds the call
            assert session is not None and session not in server.server.calls.sessions
            assert not call.done()
            call.cancel()
            writer.cancel()
            return session, high_water

    session, high_water = alongside(server, speech, bad)
    # One request is read after the check for room, and may add a few responses.
    assert high_water <= OPTIONS.max_queued_responses + 3
    assert len(session.outbox) == 0 and session.outbox.ending  # released: nothing kept
    assert server.server.calls.active == 0


def test_more_streams_than_the_limit(engine, speech):
    options = ServerOptions(port=0, max_streams=3)
    with ServerThread(options, {"tiny": engine}) as server:
        async def bad():
            # the two good streams of alongside() plus one held open fill the server
            async with AsyncStreamingClient(server.address) as c:
                held = await c.open_stream(speech.format, RecognitionOptions(interim_results=False))
                await held.send_audio(speech.chunks(100)[0])
                await wait_until_async(lambda: server.server.calls.active == 3, what="the held stream admitted")
                refused = await call_status(server.address, [config()])
                await held.done_writing()
                async for _ in held:
                    pass
            return refused

        code, details, _ = alongside(server, speech, bad)
        assert code == CODE.RESOURCE_EXHAUSTED and "limit of 3 streams" in details
        assert asyncio.run(call_status(server.address, [config(), audio(b"\0" * 3200)]))[0] == CODE.OK


def test_engine_full(checkpoints, speech):
    """More utterances than the engine admits: RESOURCE_EXHAUSTED for the stream that asks too much."""
    small = load_engine(str(checkpoints["asr"]), ServerOptions(), max_utterances=2)
    try:
        with ServerThread(ServerOptions(port=0, max_streams=4), {"tiny": small}) as server:
            data = speech.pcm.tobytes()
            step = speech.format.chunk_bytes(100)
            body = [audio(data[i : i + step]) for i in range(0, len(data), step)]

            async def bad():
                # the two good streams hold both engine slots while they speak
                await wait_until_async(lambda: small.stats().open_utterances == 2, what="both engine slots taken")
                return await call_status(server.address, [config(speech.format), *body])

            code, details, _ = alongside(server, speech, bad)
        assert code == CODE.RESOURCE_EXHAUSTED and "utterances" in details
    finally:
        small.close()


@pytest.mark.parametrize("case", ["bad_language", "nan_audio"])
def test_the_client_api_raises_the_servers_status(server, speech, case):
    """The client keeps writing while the server rejects the call: the caller sees the
    server's status and message, not a write error of the client's own."""

    async def run():
        client = AsyncStreamingClient(server.address)
        try:
            if case == "bad_language":
                options, fmt, chunks = RecognitionOptions(language="Klingon"), speech.format, list(speech.chunks(20))
            else:
                fmt = AudioFormat(16000, encoding="FLOAT32")
                samples = np.full(16000 * 5, 0.1, dtype=np.float32)
                samples[8000] = np.nan
                data = samples.tobytes()
                options, chunks = RecognitionOptions(), [data[i : i + 3200] for i in range(0, len(data), 3200)]
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in client.stream(chunks, fmt, options):
                    pass
            return error.value
        finally:
            await client.close()

    error = asyncio.run(run())
    assert error.code() == CODE.INVALID_ARGUMENT
    assert ("Klingon" in error.details()) if case == "bad_language" else ("NaN" in error.details())


def test_an_engine_failure_ends_the_stream_with_internal_not_an_empty_final(server, speech, engine, monkeypatch):
    """If the model fails on an utterance, the client gets INTERNAL, never an empty 'transcript'."""

    def broken(batch):
        raise RuntimeError("simulated model failure")

    monkeypatch.setattr(engine.runner, "update", broken)

    async def run():
        requests = [config()] + [audio(c) for c in speech.chunks(100)]
        return await call_status(server.address, requests)

    code, details, _ = asyncio.run(run())
    assert code == CODE.INTERNAL and "failed" in details
