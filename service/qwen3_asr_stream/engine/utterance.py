"""State of one utterance (its audio, features, decoder cache, last hypothesis) and the results.

The engine core works on token ids: an utterance carries its prompt as ids
(:class:`UtteranceSpec`) and updates give :class:`TokenResult`. The text layer in
``engine.py`` turns those into :class:`UpdateResult` (text, stable text, language).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from ..model.kv_cache import RowCache
from ..text.confidence import TokenLogprob
from .bias import TermBias
from .features import WindowedFeatures
from .options import check_update_interval_s
from .policy import HypothesisState


class Request(enum.IntEnum):
    """What an utterance waits for; a larger value supersedes a smaller one."""

    NONE = 0
    COMMIT = 1  # windows completed: commit them when nothing else is due (no result)
    INTERIM = 2
    FINAL = 3


@dataclass(frozen=True)
class UtteranceSpec:
    """What one utterance asks of the token-level engine: the text layer's ``UtteranceOptions``
    (language, context, cadence) turned into prompt ids."""

    head_ids: tuple[int, ...]  # prompt before the audio placeholders
    tail_ids: tuple[int, ...]  # prompt after them (ends where the transcript starts)
    interim_results: bool = True
    update_interval_s: float | None = None  # audio time between interims; None: the policy's
    bias: TermBias | None = None  # key terms that steer decoding

    def __post_init__(self) -> None:
        if not self.head_ids or not self.tail_ids:
            raise ValueError("an utterance needs prompt ids before and after the audio")
        if self.update_interval_s is not None:
            check_update_interval_s(self.update_interval_s)


@dataclass(frozen=True)
class TokenResult:
    utterance_id: int
    is_final: bool
    tokens: tuple[int, ...]  # the text prefix decoded from, then the new tokens
    prefix_tokens: int  # how many of ``tokens`` were the prefix (stable)
    audio_samples: int  # utterance audio the result covers
    # What the update computed (for tests and metrics):
    encoder_frames: int = 0  # mel frames run through the encoder
    encoder_chunks: int = 0  # 1 s chunks run through its convolutions (the others' outputs were kept)
    decoder_positions: int = 0  # positions run through the decoder (prefill and steps)
    decode_steps: int = 0  # one-token decode steps after the prefill
    draft_tokens: int = 0  # tokens offered as a draft
    accepted_tokens: int = 0  # draft tokens greedy decoding confirmed
    windows_reencoded: int = 0  # completed windows encoded again because the log floor moved
    compute_s: float = 0.0
    error: str = ""  # set when the engine failed on this update; the tokens are then empty
    # Log-probability of each of ``tokens``: the new ones from this update, the prefix's from the
    # update that decoded them (kept with the hypothesis); empty on an error.
    logprobs: tuple[float, ...] = ()


@dataclass(frozen=True)
class UpdateResult(TokenResult):
    """A result as the text layer gives it (``TokenResult`` plus text; empty on an error)."""

    language: str = ""
    text: str = ""
    # Interims: a prefix of ``text`` that every later interim's stable_text starts with (it
    # never shrinks or changes). A final is the whole utterance decoded afresh, as offline
    # transcription does: it may differ anywhere from the last interim, stable part included.
    stable_text: str = ""
    # The transcript's tokens with their log-probabilities (interims and finals).
    transcript_tokens: tuple[TokenLogprob, ...] = ()


@dataclass
class Utterance:
    """The engine's state of one utterance (``EngineCore.open`` makes it from an ``UtteranceSpec``):
    its audio, features, decoder cache and hypothesis."""

    id: int
    spec: UtteranceSpec
    window_frames: int
    window_tokens: int
    n_mels: int
    _audio: np.ndarray = field(default_factory=lambda: np.zeros(16000, dtype=np.float32))
    _length: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    request: Request = Request.NONE
    closed: bool = False  # final delivered or cancelled
    last_update_samples: int = 0
    interim_end: int = 0  # audio the requested interim covers (0: all there is when it runs)
    held_until: float = 0.0  # an interim held for a window about to complete: computed anyway then (monotonic; 0: none)
    last_push_at: float = 0.0  # when audio last arrived (monotonic)
    draft_kept: float = 1.0  # share of the last whole draft offered that greedy decoding kept
    probe_kept: bool = False  # the last probe (a draft cut to draft_probe_tokens) was kept whole

    # Engine-thread state.
    features: WindowedFeatures = field(init=False)
    capacity: int = 0  # cache slots reserved for this utterance (0: size it on first use)
    cache: RowCache | None = None
    head_length: int = 0  # cache slots of the prompt head
    committed_windows: int = 0  # completed windows whose audio tokens follow the head in the cache
    hypothesis: HypothesisState = field(default_factory=HypothesisState)
    # Encoder convolution outputs of whole, final 1 s chunks: chunk index -> (floor, (tokens, d_model)).
    chunk_embeds: dict[int, tuple[float, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = WindowedFeatures(self.window_frames, self.n_mels)

    def append(self, samples: np.ndarray) -> int:
        """Add 16 kHz float32 samples (any thread); returns the new length."""
        with self._lock:
            needed = self._length + samples.shape[0]
            if needed > self._audio.shape[0]:
                grown = np.zeros(max(needed, 2 * self._audio.shape[0]), dtype=np.float32)
                grown[: self._length] = self._audio[: self._length]
                self._audio = grown
            self._audio[self._length : needed] = samples
            self._length = needed
            return needed

    @property
    def samples(self) -> int:
        with self._lock:
            return self._length

    def snapshot(self, end: int = 0) -> np.ndarray:
        """The audio so far, or its first ``end`` samples (a copy safe to read while more arrives)."""
        with self._lock:
            return self._audio[: min(end, self._length) if end else self._length].copy()

    def chunk_floor(self, index: int) -> float | None:
        """The floor chunk ``index``'s kept convolution output was computed with (None: none kept)."""
        kept = self.chunk_embeds.get(index)
        return kept[0] if kept is not None else None

    def forget_chunks_before(self, index: int) -> None:
        for key in [k for k in self.chunk_embeds if k < index]:
            del self.chunk_embeds[key]

    def stable_slots(self) -> int:
        """Cache slots that later updates reuse: the head and the committed windows' audio tokens."""
        assert self.cache is not None
        return self.head_length + self.committed_windows * self.window_tokens
