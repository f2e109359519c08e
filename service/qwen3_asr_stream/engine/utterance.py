"""State of one utterance: its audio, features, decoder cache and last hypothesis."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field

import numpy as np

from ..model.kv_cache import KVCache
from .features import WindowedFeatures
from .options import UtteranceOptions
from .policy import HypothesisState


class Request(enum.IntEnum):
    """What an utterance waits for; a larger value supersedes a smaller one."""

    NONE = 0
    INTERIM = 1
    FINAL = 2


@dataclass(frozen=True)
class UpdateResult:
    utterance_id: int
    is_final: bool
    language: str
    text: str
    stable_text: str  # a prefix of ``text`` that later interim results keep
    tokens: tuple[int, ...]  # the text prefix decoded from, then the new tokens
    prefix_tokens: int  # how many of ``tokens`` were the prefix (stable)
    audio_samples: int  # utterance audio the result covers
    # What the update computed (for tests and metrics):
    encoder_frames: int = 0  # mel frames run through the encoder
    decoder_positions: int = 0  # positions run through the decoder (prefill and steps)
    windows_reencoded: int = 0  # completed windows encoded again because the log floor moved
    compute_s: float = 0.0
    error: str = ""  # set when the engine failed on this update; the text is then empty


@dataclass
class Utterance:
    id: int
    options: UtteranceOptions
    window_frames: int
    window_tokens: int
    n_mels: int
    _audio: np.ndarray = field(default_factory=lambda: np.zeros(16000, dtype=np.float32))
    _length: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    request: Request = Request.NONE
    closed: bool = False  # final delivered or cancelled
    last_update_samples: int = 0

    # Engine-thread state.
    features: WindowedFeatures = field(init=False)
    cache: KVCache | None = None
    head_length: int = 0  # cache slots of the prompt head
    committed_windows: int = 0  # completed windows whose audio tokens follow the head in the cache
    hypothesis: HypothesisState = field(default_factory=HypothesisState)

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

    def snapshot(self) -> np.ndarray:
        """The audio so far (a copy safe to read while more arrives)."""
        with self._lock:
            return self._audio[: self._length].copy()

    def stable_slots(self) -> int:
        """Cache slots that later updates reuse: the head and the committed windows' audio tokens."""
        assert self.cache is not None
        return self.head_length + self.committed_windows * self.window_tokens
