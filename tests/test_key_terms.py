"""Key terms that steer greedy decoding (engine/bias.py) on the tiny random-weight checkpoint:
a boosted term appears where it did not, streaming finals equal offline decoding with the same
terms, the bounds are checked once with clear errors."""

from __future__ import annotations

import queue

import pytest
import torch

from conftest import tone_mix

from qwen3_asr_stream.engine.bias import MAX_BOOST, MAX_TERM_CHARS, MAX_TERMS, TermBias
from qwen3_asr_stream.engine.options import UtteranceOptions
from qwen3_asr_stream.offline import TranscribeOptions, Transcriber
from qwen3_asr_stream.session.errors import InvalidRequest
from qwen3_asr_stream.session.settings import settings_from

TERM = "zebra crossing"


@pytest.fixture(scope="module")
def audio():
    return tone_mix(2.0, seed=11)


def offline(engine, audio, **options) -> str:
    return Transcriber(engine.model, engine.tokenizer).transcribe([audio], TranscribeOptions(**options))[0].text


def streamed_final(engine, audio, options: UtteranceOptions):
    results: queue.Queue = queue.Queue()
    uid = engine.open(options, results.put)
    for start in range(0, len(audio), 1600):
        engine.push(uid, audio[start:start + 1600])
    engine.finish(uid)
    while not (result := results.get(timeout=120)).is_final:
        pass
    return result


def test_trie_favours_what_starts_or_continues_a_term():
    bias = TermBias.from_sequences([[5, 6, 7], [9]], boost=3.0)
    assert bias.next_tokens([]) == {5, 9}
    assert bias.next_tokens([1, 5]) == {6}  # in a match: only what continues it
    assert bias.next_tokens([5, 6]) == {7}
    assert bias.next_tokens([5, 6, 7]) == {5, 9}  # the term is complete
    logits = torch.zeros(10)
    logits[2], logits[6] = 2.0, 0.0
    assert bias.pick(logits, [5]) == 6  # within the boost of the best: the term goes on
    logits[2] = 4.0
    assert bias.pick(logits, [5]) == 2  # beyond the boost: the model's choice stands (bounded)


def test_a_boosted_term_appears_and_streaming_equals_offline(engine, audio):
    plain = offline(engine, audio)
    assert TERM not in plain.lower()
    boosted = offline(engine, audio, key_terms=(TERM,), term_boost=MAX_BOOST)
    assert TERM in boosted.lower(), boosted
    final = streamed_final(engine, audio, UtteranceOptions(key_terms=(TERM,), term_boost=MAX_BOOST))
    assert final.text == boosted
    without = streamed_final(engine, audio, UtteranceOptions())
    assert TERM not in without.text.lower()


def test_terms_do_not_go_into_the_prompt(engine, audio):
    """Key terms steer decoding only: no prompt text that the model could echo."""
    from qwen3_asr_stream.text.prompts import asr_prompt_ids

    spec_ids = asr_prompt_ids(engine.tokenizer, "", None)
    options = UtteranceOptions(key_terms=(TERM,))
    assert asr_prompt_ids(engine.tokenizer, options.context, options.language) == spec_ids


@pytest.mark.parametrize("terms, boost, words", [
    (tuple(f"term{i}" for i in range(MAX_TERMS + 1)), 4.0, f"the limit is {MAX_TERMS}"),
    (("y" * (MAX_TERM_CHARS + 1),), 4.0, f"the limit is {MAX_TERM_CHARS}"),
    (("  ",), 4.0, "empty"),
    (("ok",), MAX_BOOST + 1, "boost must be"),
])
def test_bounds_are_clear_errors(engine, terms, boost, words):
    with pytest.raises(ValueError, match=words):
        UtteranceOptions(key_terms=terms, term_boost=boost)
    with pytest.raises(InvalidRequest, match=words):
        settings_from(_Backend(engine), sample_rate=16000, key_terms=terms, term_boost=boost)


class _Backend:
    """Just what settings_from reads of a backend."""

    def __init__(self, engine) -> None:
        from qwen3_asr_stream.session.limits import SessionLimits

        self.limits = SessionLimits()
        self.engines = {"tiny": engine}
        self.default_model = "tiny"


def test_asr_v1_key_terms_change_mid_stream(engine, phrases):
    """asr.v1 ``KeyTerms`` among the audio (Python client ``KeyTerms``): the utterances that start
    after it are steered toward the new terms, the ones before are not; beyond the limits the
    stream ends with INVALID_ARGUMENT naming the limit (the one check, ``check_terms``)."""
    import asyncio

    import numpy as np
    from grpc import StatusCode
    from grpc.aio import AioRpcError

    from conftest import compose
    from qwen3_asr_client import AsyncStreamingClient, AudioFormat, KeyTerms, RecognitionOptions, Result
    from qwen3_asr_stream.server.options import ServerOptions
    from qwen3_asr_stream.testing.harness import ServerThread

    pytest.importorskip("webrtcvad")
    a, _, rate = phrases
    one = compose([a], rate).pcm.astype("<i2").tobytes()
    step = rate // 10 * 2
    chunks = [one[i:i + step] for i in range(0, len(one), step)]
    options = RecognitionOptions(interim_results=False, word_timestamps=False)

    async def finals(inputs) -> list[str]:
        async with AsyncStreamingClient(server.address) as client:
            return [i.transcript for i in [x async for x in client.stream(inputs, AudioFormat(rate), options)]
                    if isinstance(i, Result) and i.is_final]

    with ServerThread(ServerOptions(port=0), {"tiny": engine}) as server:
        before, after, cleared = asyncio.run(finals([*chunks, KeyTerms((TERM,)), *chunks, KeyTerms(()), *chunks]))
        assert TERM not in before.lower() and TERM in after.lower(), (before, after)
        assert TERM not in cleared.lower(), cleared  # an empty list clears them
        with pytest.raises(AioRpcError) as refused:
            asyncio.run(finals([*chunks, KeyTerms(tuple(f"t{i}" for i in range(MAX_TERMS + 1)))]))
        assert refused.value.code() == StatusCode.INVALID_ARGUMENT
        assert f"the limit is {MAX_TERMS}" in refused.value.details()
