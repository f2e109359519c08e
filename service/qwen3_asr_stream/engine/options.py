"""Options of the streaming engine, each stage one frozen dataclass validated in one place."""

from __future__ import annotations

from dataclasses import dataclass

from .bias import DEFAULT_BOOST, check_terms
from .decoding import check_repetition_guard

# The interim cadence (audio time between interim updates), written once: its bounds, the
# default a stream gets unless it asks (the server's --update-interval-ms), and the official
# streaming policy's 2 s chunks (``PolicyOptions``' default, what the benchmarks compare with).
# Protocols speak milliseconds, the engine seconds.
MIN_UPDATE_INTERVAL_MS = 100
MAX_UPDATE_INTERVAL_MS = 30_000
DEFAULT_UPDATE_INTERVAL_MS = 1000
OFFICIAL_UPDATE_INTERVAL_S = 2.0


def update_interval_problem(milliseconds: float) -> str | None:
    """Why ``milliseconds`` is no interim cadence (None when it is one)."""
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, (int, float)) or not (
            MIN_UPDATE_INTERVAL_MS <= milliseconds <= MAX_UPDATE_INTERVAL_MS):
        return f"update_interval_ms must be {MIN_UPDATE_INTERVAL_MS}-{MAX_UPDATE_INTERVAL_MS}, got {milliseconds!r}"
    return None


def check_update_interval_s(seconds: float) -> None:
    """Raise ValueError unless ``seconds`` is within the cadence's bounds."""
    if update_interval_problem(seconds * 1000) is not None:
        raise ValueError(f"update_interval_s must be within {MIN_UPDATE_INTERVAL_MS / 1000:g}.."
                         f"{MAX_UPDATE_INTERVAL_MS / 1000:g} s, got {seconds}")


@dataclass(frozen=True)
class PolicyOptions:
    """When interim updates run and which text they keep (defaults: the official streaming policy)."""

    update_interval_s: float = OFFICIAL_UPDATE_INTERVAL_S  # audio time between interim updates
    unfixed_updates: int = 2  # the first N updates decode without a text prefix
    rollback_tokens: int = 5  # the prefix is the last hypothesis minus its last K tokens
    max_tokens_per_update: int = 32  # hard bound on new tokens of an interim update
    max_tokens_final: int = 512  # hard bound on tokens of a final decode
    repetition_limit: int = 8  # stop decoding when a token pattern repeats this many times (0 = off)
    max_pattern_tokens: int = 8  # longest token pattern the repetition guard looks for
    draft: bool = True  # verify the last hypothesis as a draft (same tokens, fewer decode steps)
    # After an update kept less than half of its draft, the next one offers only this many
    # draft tokens (a cheap probe; a full draft again once a probe is kept): a wrong draft's
    # prefill is not paid update after update.
    draft_probe_tokens: int = 2

    def __post_init__(self) -> None:
        check_update_interval_s(self.update_interval_s)
        if self.unfixed_updates < 0 or self.rollback_tokens < 0:
            raise ValueError("unfixed_updates and rollback_tokens must not be negative")
        if self.max_tokens_per_update < 1 or self.max_tokens_final < 1:
            raise ValueError("token bounds must be at least 1")
        check_repetition_guard(self.repetition_limit, self.max_pattern_tokens)
        if self.draft_probe_tokens < 1:
            raise ValueError("draft_probe_tokens must be at least 1")


@dataclass(frozen=True)
class EngineOptions:
    max_batch: int = 16  # utterances decoded together in one step
    max_utterances: int = 64  # admission limit on open utterances
    kv_budget_bytes: int = 4 << 30  # decoder cache memory all open utterances may use together
    max_utterance_s: float = 60.0  # the cache of one utterance is reserved for this much audio
    policy: PolicyOptions = PolicyOptions()
    static_decode: bool | None = None  # fixed-shape decode steps (CUDA graphs); None: on CUDA only
    # Even updates across window boundaries: an interim due just before a window completes waits
    # for it, and completed windows are committed between updates (False: the plain cadence).
    even_updates: bool = True

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.max_utterances < 1:
            raise ValueError(f"max_utterances must be at least 1, got {self.max_utterances}")
        if self.kv_budget_bytes <= 0:
            raise ValueError("kv_budget_bytes must be positive")
        if not 1 <= self.max_utterance_s <= 1200:
            raise ValueError(f"max_utterance_s must be within 1..1200 s, got {self.max_utterance_s}")


@dataclass(frozen=True)
class UtteranceOptions:
    """What one utterance asks of the engine."""

    language: str | None = None  # normalised name, or None to detect
    context: str = ""
    interim_results: bool = True
    update_interval_s: float | None = None  # audio time between interims; None: the policy's
    key_terms: tuple[str, ...] = ()  # steer decoding toward these (engine/bias.py)
    term_boost: float = DEFAULT_BOOST

    def __post_init__(self) -> None:
        if self.update_interval_s is not None:
            check_update_interval_s(self.update_interval_s)
        check_terms(self.key_terms, self.term_boost)
