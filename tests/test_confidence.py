"""Confidence: token log-probabilities from the one greedy loop, per word and per result.

The service surfaces (asr.v1, Riva, OpenAI REST and Realtime) are checked in their own
end-to-end tests; here the pieces: the loop's log-probabilities are the same with and
without a draft, and a word's confidence is that of the tokens spelling it.
"""

from __future__ import annotations

import math

import pytest

from conftest import DRAFT_MAX_TOKENS, draft_kinds, draft_row, tone_prompt
from qwen3_asr_stream.checkpoint import load_model
from qwen3_asr_stream.engine.decoding import decode
from qwen3_asr_stream.text.alignment import split_words
from qwen3_asr_stream.text.confidence import TokenLogprob, confidence_of, transcript_tokens, word_confidences
from qwen3_asr_stream.text.tokenizer import TextTokenizer


@pytest.fixture(scope="module")
def asr(checkpoints):
    folder = checkpoints["asr"]
    return load_model(folder), TextTokenizer.from_folder(folder)


def test_log_probabilities_are_the_same_with_and_without_a_draft(asr):
    model, tokenizer = asr
    prompt, audio = tone_prompt(model, tokenizer, 6.1, seed=4)
    plain = decode(model, [draft_row(model, tokenizer, prompt, audio)])[0]
    assert len(plain.tokens) > 4 and len(plain.logprobs) == len(plain.tokens)
    assert all(-math.inf < p <= 0 for p in plain.logprobs)
    assert len(set(plain.logprobs)) > 1  # measured per token, not one constant
    for name, draft in draft_kinds(plain.tokens).items():
        row = decode(model, [draft_row(model, tokenizer, prompt, audio, draft)])[0]
        assert row.tokens == plain.tokens, name
        assert row.logprobs == pytest.approx(plain.logprobs, abs=1e-4), name
    # The repetition guard cuts tokens and their log-probabilities together.
    cut = decode(model, [draft_row(model, tokenizer, prompt, audio, max_tokens=DRAFT_MAX_TOKENS,
                                   repetition_limit=2)])[0]
    assert len(cut.logprobs) == len(cut.tokens)


def _scored(tokenizer, text: str, logprobs: list[float]) -> tuple[TokenLogprob, ...]:
    ids = tokenizer.encode(text)
    return transcript_tokens(ids, logprobs[: len(ids)], tag_id=tokenizer.token_id("<asr_text>"),
                             forced_language=False, is_special=tokenizer.is_special,
                             token_bytes=tokenizer.token_bytes)


def test_transcript_tokens_start_after_the_language_tag(asr):
    _, tokenizer = asr
    head = len(tokenizer.encode("language English<asr_text>"))
    scored = _scored(tokenizer, "language English<asr_text>Hello there", [-5.0] * head + [-0.1] * 20)
    assert "".join(t.token for t in scored) == "Hello there"
    assert all(t.logprob == -0.1 for t in scored)
    assert confidence_of(scored) == pytest.approx(math.exp(-0.1))
    assert confidence_of(()) is None


def test_word_confidence_is_that_of_the_tokens_spelling_it(asr):
    _, tokenizer = asr
    text = "café, naïve 你好 don't stop."
    ids = tokenizer.encode(text)
    logprobs = [-0.01 * (i + 1) for i in range(len(ids))]
    scored = _scored(tokenizer, text, logprobs)
    assert b"".join(t.bytes for t in scored).decode() == text
    words = split_words(text, "English")
    assert words == ["café", "naïve", "你", "好", "don't", "stop"]
    scores = word_confidences(scored, words)
    assert all(s is not None and 0 < s <= 1 for s in scores)
    # Recompute each word from the byte spans of the tokens: the tokens overlapping its characters.
    starts = [0]
    for t in scored:
        starts.append(starts[-1] + len(t.bytes))
    encoded = text.encode()
    at = 0
    for word, score in zip(words, scores):
        begin = encoded.index(word.encode(), at)
        end = begin + len(word.encode())
        at = end
        used = [i for i in range(len(scored)) if starts[i] < end and starts[i + 1] > begin]
        assert score == pytest.approx(math.exp(sum(scored[i].logprob for i in used) / len(used))), word
