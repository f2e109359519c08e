"""The partial-result policy: which text prefix an update decodes from, and what is stable.

An interim update decodes from a prefix of the previous hypothesis: the previous
tokens minus the last ``rollback_tokens`` (none for the first ``unfixed_updates``
updates), so a word cut by the end of the audio can still change. The prefix an
update was given is stable: every later prefix starts with it, so text once
shown as stable never changes in later interim results. A final decode starts
from no prefix at all (the full audio, as offline transcription does).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..tokenizer import TextTokenizer
from .options import PolicyOptions


@dataclass
class HypothesisState:
    tokens: list[int] = field(default_factory=list)  # last hypothesis: prefix + generated
    stable: int = 0  # tokens of ``tokens`` that are stable
    updates: int = 0  # interim updates done


def choose_prefix(state: HypothesisState, options: PolicyOptions, tokenizer: TextTokenizer) -> list[int]:
    """The prefix for the next interim update."""
    if state.updates < options.unfixed_updates:
        return list(state.tokens[: state.stable])
    keep = max(state.stable, len(state.tokens) - options.rollback_tokens)
    # Never cut inside a character: roll back further while the prefix ends broken,
    # but never into the stable part.
    while keep > state.stable and tokenizer.decode(state.tokens[:keep]).endswith("\ufffd"):
        keep -= 1
    return list(state.tokens[:keep])


def record_interim(state: HypothesisState, prefix: list[int], generated: list[int]) -> None:
    state.tokens = prefix + generated
    state.stable = len(prefix)
    state.updates += 1


def repetition_detected(tokens: list[int], limit: int, max_pattern: int) -> int:
    """Length of a pattern repeated ``limit`` times at the end of ``tokens``, else 0."""
    if limit < 2:
        return 0
    for size in range(1, max_pattern + 1):
        span = size * limit
        if len(tokens) < span:
            break
        pattern = tokens[-size:]
        if all(tokens[-span + i * size : -span + (i + 1) * size] == pattern for i in range(limit - 1)):
            return size
    return 0
