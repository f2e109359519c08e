"""Server paths no other test would miss if they broke: the aligner worker's per-request fallback,
routing between several models, and a stopped engine answering UNAVAILABLE."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from conftest import tone_mix, wait_until
from qwen3_asr_client import AsyncStreamingClient, AudioFormat, RecognitionOptions, Result

pytest.importorskip("webrtcvad")
from qwen3_asr_stream.engine.aligner import AlignRequest  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread, load_aligner, load_engine  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402
from qwen3_asr_stream.session.aligner_worker import AlignerWorker  # noqa: E402

FORMAT = AudioFormat(16000)


def voiced(seconds: float, silence_s: float = 1.0) -> bytes:
    """A 150 Hz sawtooth (speech for the VAD), then silence: one utterance with a final."""
    t = np.arange(int(seconds * 16000)) / 16000
    wave = np.concatenate([0.3 * (2 * ((150 * t) % 1) - 1), np.zeros(int(silence_s * 16000))])
    return (wave * 32767).astype(np.int16).tobytes()


SPEECH = voiced(2.0)
CHUNKS = [SPEECH[i:i + 3200] for i in range(0, len(SPEECH), 3200)]
QUIET = RecognitionOptions(interim_results=False, word_timestamps=False)


# -- aligner worker ------------------------------------------------------------------------------


def test_aligner_worker_fallback_fails_only_the_bad_request(checkpoints):
    """A batch with one request the aligner cannot take fails as a whole; each request is then
    aligned alone, so only that one fails and the others get the words they get alone."""
    aligner = load_aligner(str(checkpoints["aligner"]))
    good = [AlignRequest(tone_mix(1.5 + i, seed=i), text, "English")
            for i, text in enumerate(["hello world", "the quick brown fox", "one two three four"])]
    bad = AlignRequest(np.zeros(0, np.float32), "no audio at all", "English")
    with pytest.raises(RuntimeError):  # the precondition: this batch fails in the aligner
        aligner.align([good[0], bad])
    alone = [aligner.align([request])[0] for request in good]

    batches: list[int] = []
    worker = AlignerWorker(aligner, max_batch=8, on_batch=lambda n, seconds: batches.append(n)).start()
    try:
        busy = worker.submit(AlignRequest(tone_mix(60.0, seed=9), "a long busy request " * 20, "English"))
        wait_until(lambda: not worker.queued, timeout=10, interval=0.001, what="the worker taking it")
        futures = [worker.submit(r) for r in (good[0], bad, good[1], good[2])]
        # The precondition: the four wait together while the long one runs, so they form one batch.
        assert worker.queued == 4 and not busy.done()
        busy.result(60)
        results = [f.exception(60) or f.result() for f in futures]
    finally:
        worker.close()
    assert isinstance(results[1], RuntimeError)
    assert [results[0], results[2], results[3]] == alone
    assert batches == [1]  # the long one alone; the batch of four failed and went one by one
    assert worker.aligned == 1


# -- several models ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models(checkpoints):
    engines = {"first": load_engine(str(checkpoints["asr"]), ServerOptions()),
               "second": load_engine(str(checkpoints["asr_alt"]), ServerOptions())}
    with ServerThread(ServerOptions(port=0), engines) as server:
        yield server, engines
    for engine in engines.values():
        engine.close()


def updates(engines) -> dict[str, int]:
    return {name: engine.stats().updates for name, engine in engines.items()}


async def stream_finals(address: str, options: RecognitionOptions) -> list[Result]:
    async with AsyncStreamingClient(address) as client:
        items = [item async for item in client.stream(CHUNKS, FORMAT, options)]
    return [i for i in items if isinstance(i, Result) and i.is_final]


@pytest.mark.parametrize("model, expected", [("second", "second"), ("first", "first"), ("", "first")])
def test_a_stream_is_decoded_by_the_model_it_names(two_models, model, expected):
    server, engines = two_models
    before = updates(engines)
    finals = asyncio.run(stream_finals(server.address, RecognitionOptions(
        model=model, interim_results=False, word_timestamps=False)))
    after = updates(engines)
    assert len(finals) == 1
    other = next(name for name in engines if name != expected)
    assert after[expected] > before[expected] and after[other] == before[other], (before, after)


@pytest.mark.parametrize("model", ["second", "first"])
def test_recognize_is_decoded_by_the_model_it_names(two_models, model):
    server, engines = two_models
    before = updates(engines)

    async def run():
        async with AsyncStreamingClient(server.address) as client:
            return await client.recognize(SPEECH, FORMAT, RecognitionOptions(model=model, word_timestamps=False))
    assert len(asyncio.run(run())) == 1
    after = updates(engines)
    other = next(name for name in engines if name != model)
    assert after[model] > before[model] and after[other] == before[other], (before, after)


def test_the_two_models_differ(two_models):
    """The precondition of the routing tests' meaning: the checkpoints give different transcripts."""
    server, _ = two_models
    first = asyncio.run(stream_finals(server.address, RecognitionOptions(model="first", **NO_EXTRAS)))
    second = asyncio.run(stream_finals(server.address, RecognitionOptions(model="second", **NO_EXTRAS)))
    assert first[0].transcript != second[0].transcript


NO_EXTRAS = {"interim_results": False, "word_timestamps": False}


# -- a stopped engine ----------------------------------------------------------------------------


def test_a_stopped_engine_is_unavailable(checkpoints):
    engine = load_engine(str(checkpoints["asr"]), ServerOptions())
    with ServerThread(ServerOptions(port=0), {"tiny": engine}) as server:
        engine.close()  # as when the engine thread has stopped under a running server

        async def run():
            async with AsyncStreamingClient(server.address) as client:
                with pytest.raises(grpc.aio.AioRpcError) as streamed:
                    async for _ in client.stream(CHUNKS, FORMAT, QUIET):
                        pass
                with pytest.raises(grpc.aio.AioRpcError) as recognized:
                    await client.recognize(SPEECH, FORMAT, QUIET)
            return streamed.value, recognized.value
        for error in asyncio.run(run()):
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            assert "engine is not running" in error.details()
