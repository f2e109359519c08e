"""How sure the model was: the transcript's tokens with their log-probabilities, per word and per result.

The decoding loop gives each output token's log-probability (``engine/decoding.py``).
Here the tokens of the transcript (after the model's ``<asr_text>`` tag; the language
name before it is not part of the text) become :class:`TokenLogprob` (OpenAI's
``logprobs`` shape), and

- a result's confidence is ``exp(mean log-probability)`` of its transcript tokens (the
  geometric mean of their probabilities; ``avg_logprob`` is the mean itself);
- a word's confidence is the same over the tokens that spell it: the word units of the
  aligner (``split_words``: letters, digits, apostrophes) are found, in order, among the
  characters the tokens decode to, and each character belongs to the tokens whose bytes
  make it up.

All values are in [0, 1]. Pure Python: no torch.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass
from typing import Callable, Sequence

__all__ = ["TokenLogprob", "transcript_tokens", "mean_logprob", "confidence_of", "word_confidences", "tokens_ending_in"]


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    id: int  # the token id
    token: str  # the token's text ('\ufffd' where it holds only part of a character)
    bytes: bytes  # its UTF-8 bytes
    logprob: float  # natural log of its probability, <= 0


def transcript_tokens(tokens: Sequence[int], logprobs: Sequence[float], *, tag_id: int, forced_language: bool,
                      is_special: Callable[[int], bool], token_bytes: Callable[[int], bytes]
                      ) -> tuple[TokenLogprob, ...]:
    """The tokens of the transcript text, as ``parse_output`` reads the decoded answer: all of
    them when the language was forced (the prompt ended with the tag), else those after the
    first ``<asr_text>`` tag (all when there is none); special tokens and ids outside the
    vocabulary (not in the text) are left out."""
    assert len(tokens) == len(logprobs), "one log-probability per token"
    start = 0
    if not forced_language and tag_id in tokens:
        start = list(tokens).index(tag_id) + 1
    out = []
    for token, logprob in zip(tokens[start:], logprobs[start:]):
        if is_special(token):
            continue
        raw = token_bytes(token)
        if not raw:
            continue
        out.append(TokenLogprob(token, raw.decode("utf-8", errors="replace"), raw, min(0.0, float(logprob))))
    return tuple(out)


def mean_logprob(tokens: Sequence[TokenLogprob]) -> float | None:
    """The mean log-probability of ``tokens``; None without tokens."""
    return sum(t.logprob for t in tokens) / len(tokens) if tokens else None


def confidence_of(tokens: Sequence[TokenLogprob]) -> float | None:
    """exp(mean log-probability), in [0, 1]; None without tokens."""
    mean = mean_logprob(tokens)
    return None if mean is None else math.exp(mean)


def _characters(tokens: Sequence[TokenLogprob]) -> tuple[str, list[tuple[int, ...]]]:
    """The text the tokens decode to and, per character, the indices of the tokens whose bytes it
    is made of (a character split across tokens belongs to each of them)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chars: list[str] = []
    owners: list[tuple[int, ...]] = []
    waiting: list[int] = []  # tokens whose bytes have not completed a character yet
    for i, t in enumerate(tokens):
        waiting.append(i)
        for ch in decoder.decode(t.bytes):
            chars.append(ch)
            owners.append(tuple(waiting))
            waiting = [i]
        waiting = [i] if decoder.getstate()[0] else []  # bytes of an open character wait for the next token
    for ch in decoder.decode(b"", final=True):
        chars.append(ch)
        owners.append(tuple(waiting))
    return "".join(chars), owners


def word_confidences(tokens: Sequence[TokenLogprob], words: Sequence[str]) -> list[float | None]:
    """The confidence of each word unit (``split_words`` of the tokens' text), in order; None for
    a unit whose characters are not found in the tokens' text (not expected)."""
    text, owners = _characters(tokens)
    out: list[float | None] = []
    at = 0
    for word in words:
        used: set[int] = set()
        pos = at
        for ch in word:
            pos = text.find(ch, pos)
            if pos < 0:
                break
            used.update(owners[pos])
            pos += 1
        if pos < 0 or not used:
            out.append(None)
            continue
        at = pos
        out.append(math.exp(sum(tokens[i].logprob for i in used) / len(used)))
    return out


def tokens_ending_in(tokens: Sequence[TokenLogprob], start: int, end: int) -> tuple[TokenLogprob, ...]:
    """The tokens whose last character is at ``start`` <= i < ``end`` of the text they spell
    with its leading whitespace left out (as the transcript text is). Consecutive spans give
    each token once: a streamed delta's tokens."""
    text, owners = _characters(tokens)
    skip = len(text) - len(text.lstrip())
    last: dict[int, int] = {}
    for pos, owner in enumerate(owners):
        for i in owner:
            last[i] = pos - skip
    return tuple(tokens[i] for i in sorted(last) if start <= last[i] < end)
