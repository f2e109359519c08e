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
from typing import Callable, Sequence

from .options import PolicyOptions

# Whether a token sequence ends on a whole character (the text layer knows; a byte-level
# BPE token can end inside a UTF-8 character).
WholeCharacters = Callable[[Sequence[int]], bool]


@dataclass
class HypothesisState:
    tokens: list[int] = field(default_factory=list)  # last hypothesis: prefix + generated
    # The log-probability of each of ``tokens`` from the update that decoded it (a prefix token
    # fed back keeps the value it was decoded with).
    logprobs: list[float] = field(default_factory=list)
    stable: int = 0  # tokens of ``tokens`` that are stable
    updates: int = 0  # interim updates done


def choose_prefix(state: HypothesisState, options: PolicyOptions, whole: WholeCharacters) -> list[int]:
    """The prefix for the next interim update (at most ``max_tokens_final`` tokens: an
    interim never holds more text than a final may)."""
    if state.updates < options.unfixed_updates:
        keep = state.stable
    else:
        keep = max(state.stable, len(state.tokens) - options.rollback_tokens)
        # Never cut inside a character: roll back further while the prefix ends broken,
        # but never into the stable part.
        while keep > state.stable and not whole(state.tokens[:keep]):
            keep -= 1
    return list(state.tokens[: min(keep, options.max_tokens_final)])


def record_interim(state: HypothesisState, prefix: list[int], generated: list[int], logprobs: list[float]) -> None:
    """The interim's tokens become the hypothesis: ``prefix`` (a prefix of the last hypothesis)
    then ``generated`` with their ``logprobs``."""
    assert state.tokens[: len(prefix)] == prefix and len(generated) == len(logprobs)
    state.logprobs = state.logprobs[: len(prefix)] + logprobs
    state.tokens = prefix + generated
    state.stable = len(prefix)
    state.updates += 1
