"""Speaker embedding models: sliding windows of an utterance's audio -> unit vectors.

A speaker model maps audio to embeddings whose cosine similarity is high for one voice
and lower between voices. The diarization stage (``session/diarization.py``) embeds
windows of each final utterance and clusters them online; it sees only
:class:`SpeakerEncoder`.

- ``resemblyzer``: the GE2E speaker encoder (3-layer LSTM over 40 mel bands, 256-d
  embeddings) whose trained weights ship inside the ``resemblyzer`` wheel (17 MB), so it
  works offline with no download. Its windows are its own "partials": 1.6 s of audio
  every 0.4 s (an utterance shorter than one window is one window, zero-padded by it).
  It runs on one CPU thread (``threads``), beside the engine rather than competing with it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

SPEAKER_MODELS = ("resemblyzer",)
MAX_SPEAKERS = 32  # the most speakers a stream may ask for (the server's --max-speakers is at most this)


class SpeakerEncoder(Protocol):
    name: str
    dim: int

    def windows(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """16 kHz mono float32 ``(samples,)`` -> ``(n, dim)`` unit embeddings of sliding windows
        and ``(n, 2)`` their ``[start, end)`` in samples (clamped to the audio)."""
        ...


class ResemblyzerEncoder:
    """GE2E from the ``resemblyzer`` wheel (its packaged weights), on the CPU."""

    name = "resemblyzer"
    dim = 256
    windows_per_second = 2.5  # a window every 0.4 s

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads  # torch threads of the thread that calls ``windows`` (set per thread)
        try:
            from resemblyzer import VoiceEncoder
        except ImportError as exc:
            raise RuntimeError("the resemblyzer speaker model needs the resemblyzer package: "
                               "pip install --no-deps resemblyzer==0.1.4 (it uses librosa)") from exc
        self._encoder = VoiceEncoder("cpu", verbose=False)

    def windows(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        torch.set_num_threads(self.threads)  # per calling thread (OpenMP): the engine's threads keep theirs
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32), np.zeros((0, 2), np.int64)
        _, partials, slices = self._encoder.embed_utterance(audio, return_partials=True,
                                                            rate=self.windows_per_second)
        spans = np.array([[s.start, min(s.stop, audio.shape[0])] for s in slices], dtype=np.int64)  # samples
        return partials.astype(np.float32), spans


def load_speaker_model(name: str) -> SpeakerEncoder:
    """A speaker model by name (``SPEAKER_MODELS``); raises ValueError for another name."""
    if name == "resemblyzer":
        return ResemblyzerEncoder()
    raise ValueError(f"unknown speaker model {name!r}; this server knows {', '.join(SPEAKER_MODELS)}")
