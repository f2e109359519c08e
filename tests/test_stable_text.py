"""Stable text as clients see it: an interim's stable_text never shrinks or changes later."""

from __future__ import annotations

import threading

import pytest

from conftest import tone_mix
from qwen3_asr_stream.checkpoint import load_model
from qwen3_asr_stream.engine.text_layer import StreamingEngine, _TextState, text_of
from qwen3_asr_stream.engine.options import EngineOptions, PolicyOptions, UtteranceOptions
from qwen3_asr_stream.engine.utterance import TokenResult
from qwen3_asr_stream.text.tokenizer import TextTokenizer
from qwen3_asr_stream.text.transcript import parse_output


@pytest.fixture(scope="module")
def asr(checkpoints):
    folder = checkpoints["asr"]
    return load_model(folder), TextTokenizer.from_folder(folder)


@pytest.mark.parametrize("language", [None, "English"])
def test_every_interim_keeps_the_stable_text_shown_before(asr, language):
    model, tokenizer = asr
    policy = PolicyOptions(update_interval_s=0.5, max_tokens_per_update=5, rollback_tokens=3, unfixed_updates=1,
                           repetition_limit=0)
    results, done = {}, threading.Event()

    def callback(r):
        results.setdefault(r.utterance_id, []).append(r)
        if sum(x.is_final for rs in results.values() for x in rs) == 3:
            done.set()

    with StreamingEngine(model, tokenizer, EngineOptions(max_batch=3, policy=policy)) as engine:
        ids = [engine.open(UtteranceOptions(language=language, update_interval_s=0.5), callback) for _ in range(3)]
        audios = [tone_mix(9.0, seed=30 + i) for i in range(3)]
        for start in range(0, 9 * 16000, 8000):
            for uid, audio in zip(ids, audios):
                engine.push(uid, audio[start : start + 8000])
            threading.Event().wait(0.03)
        for uid in ids:
            engine.finish(uid)
        assert done.wait(120)
    grew = 0
    for uid in ids:
        interims = [r for r in results[uid] if not r.is_final]
        assert len(interims) >= 4
        previous = ""
        for r in interims:
            assert r.stable_text.startswith(previous)
            assert r.text.startswith(r.stable_text)
            grew += len(r.stable_text) > len(previous)
            previous = r.stable_text
    assert grew > 0  # stable text did appear and grow


def _result(tokens, prefix):
    return TokenResult(1, False, tuple(tokens), prefix, 16000)


def test_stable_text_survives_a_transcript_that_the_parser_collapses(asr):
    """The parser collapses long repetitions of the whole text: the stable part shown before stays."""
    _, tokenizer = asr
    state = _TextState("English")
    first = tokenizer.encode("ha ha ha ha ha")
    language, text, stable = text_of(tokenizer, state, _result(first + tokenizer.encode(" ha"), len(first)))
    assert stable == "ha ha ha ha ha" and text.startswith(stable)
    # The next update repeats "ha" so often that the parser cuts the repetition down to a few
    # copies: the parsed text no longer starts with the stable text shown before.
    looping = first + tokenizer.encode(" ha" * 40)
    assert not parse_output(tokenizer.decode(looping), "English").text.startswith(stable)  # the precondition
    _, text2, stable2 = text_of(tokenizer, state, _result(looping, len(first)))
    assert stable2 == stable and text2.startswith(stable2)
    # A final may change anything; its stable_text is empty.
    final = TokenResult(1, True, tuple(tokenizer.encode("hello")), 0, 16000)
    assert text_of(tokenizer, state, final)[1:] == ("hello", "")


def test_stable_text_through_the_service(checkpoints, espeak, tmp_path):
    """Streams utterances through the gRPC service: every interim's stable_text starts with the
    previous interim's of that utterance, and its transcript starts with it."""
    import asyncio

    pytest.importorskip("webrtcvad")
    from qwen3_asr_client import AsyncStreamingClient, RecognitionOptions, Result
    from qwen3_asr_stream.testing.harness import ServerThread, load_engine
    from qwen3_asr_stream.server.options import ServerOptions
    from conftest import compose, read_wav, synthesize

    texts = ["the quick brown fox jumps over the lazy dog near the river bank",
             "seven silver spoons were stacked beside the old wooden table"]
    waves = [read_wav(synthesize(espeak, t, tmp_path / f"{i}.wav")) for i, t in enumerate(texts)]
    speech = compose([w for w, _ in waves], waves[0][1])
    engine = load_engine(str(checkpoints["asr"]), ServerOptions(), policy=PolicyOptions(
        update_interval_s=0.3, rollback_tokens=3, unfixed_updates=1, max_tokens_per_update=6, repetition_limit=0))
    options = RecognitionOptions(interim_results=True, update_interval_ms=300, word_timestamps=False)

    async def run(address):
        async def chunks():
            for chunk in speech.chunks(100):
                yield chunk
                await asyncio.sleep(0.05)
        async with AsyncStreamingClient(address) as client:
            return [item async for item in client.stream(chunks(), speech.format, options)]

    try:
        with ServerThread(ServerOptions(port=0), {"tiny": engine}, None) as server:
            items = asyncio.run(run(server.address))
    finally:
        engine.close()
    results = [r for r in items if isinstance(r, Result)]
    assert sum(r.is_final for r in results) == 2
    grew = 0
    assert sum(not r.is_final for r in results) >= 4
    for index in (0, 1):
        interims = [r for r in results if r.utterance_index == index and not r.is_final]
        previous = ""
        for r in interims:
            assert r.stable_text.startswith(previous), (previous, r.stable_text)
            assert r.transcript.startswith(r.stable_text)
            grew += len(r.stable_text) > len(previous)
            previous = r.stable_text
    assert grew > 0
