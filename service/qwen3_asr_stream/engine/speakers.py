"""Speaker embedding models: sliding windows of an utterance's audio -> unit vectors.

A speaker model maps audio to embeddings whose cosine similarity is high for one voice
and lower between voices. The diarization stage (``session/diarization.py``) embeds
windows of each final utterance and clusters them online; it sees only
:class:`SpeakerEncoder`.

- ``resemblyzer``: the GE2E speaker encoder (3-layer LSTM over 40 mel bands, 256-d
  embeddings) whose trained weights ship inside the ``resemblyzer`` wheel (17 MB), so it
  works offline with no download. Windows: 1.6 s of audio every 0.4 s (an utterance
  shorter than one window is one window, zero-padded).
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
    hop: int  # samples between window starts
    width: int  # samples of a window

    def features(self, audio: np.ndarray, first: int = 0, complete_only: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
        """16 kHz mono float32 ``(samples,)`` -> the model's input for each window from index
        ``first`` on (window k starts at ``k * hop``), ``(n, ...)``, and ``(n, 2)`` their
        ``[start, end)`` in samples (clamped to the audio). ``complete_only``: only windows wholly
        inside the audio (a stream's audio so far); else also the last ones, padded, that cover
        at least 3/4 of a window (at least one window for any audio)."""
        ...

    def embed(self, features: np.ndarray) -> np.ndarray:
        """``(n, ...)`` features of windows (of any utterances, batched) -> ``(n, dim)`` unit embeddings."""
        ...


def window_count(samples: int, hop: int, width: int, complete_only: bool) -> int:
    """How many windows (from index 0) :meth:`SpeakerEncoder.windows` gives for ``samples`` of audio."""
    if complete_only:
        return 0 if samples < width else (samples - width) // hop + 1
    reach = samples - (3 * width) // 4
    return 1 if reach < 0 else reach // hop + 1


class ResemblyzerEncoder:
    """GE2E from the ``resemblyzer`` wheel (its packaged weights), on the CPU. Each window is
    its own 1.6 s of audio through resemblyzer's mel front end and LSTM (its "partials", but
    each computed alone so that a stream's windows can be embedded as its audio arrives)."""

    name = "resemblyzer"
    dim = 256
    hop = 6400  # 0.4 s
    width = 25600  # 1.6 s: resemblyzer's 160 mel frames of 10 ms

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads  # torch threads of the thread that calls ``windows`` (set per thread)
        try:
            from resemblyzer import VoiceEncoder, audio
        except ImportError as exc:
            raise RuntimeError("the resemblyzer speaker model needs the resemblyzer package: "
                               "pip install --no-deps resemblyzer==0.1.4 (it uses librosa)") from exc
        import librosa
        import torch

        self._encoder = VoiceEncoder("cpu", verbose=False)
        # resemblyzer's front end (librosa's power mel spectrogram: 25 ms Hann windows every 10 ms,
        # 40 Slaney mel bands) in torch, so that a batch of windows is a few torch calls that
        # release the GIL (the engine thread runs beside it); tests/test_diarization_units.py
        # checks it against resemblyzer's own.
        self._mel_basis = torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)).float()
        self._window = torch.hann_window(400, periodic=True)
        self._reference_mel = audio.wav_to_mel_spectrogram  # (samples,) -> (frames, 40), for the test

    def mel(self, pieces: np.ndarray) -> np.ndarray:
        """``(n, width)`` audio -> ``(n, width // 160, 40)`` resemblyzer mel frames."""
        import torch

        with torch.inference_mode():
            spec = torch.stft(torch.from_numpy(pieces), 400, 160, window=self._window, center=True,
                              pad_mode="constant", return_complex=True).abs().pow(2)  # (n, 201, frames)
            return (self._mel_basis @ spec).transpose(1, 2)[:, : self.width // 160].numpy()

    def features(self, audio: np.ndarray, first: int = 0, complete_only: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        torch.set_num_threads(self.threads)  # per calling thread (OpenMP): the engine's threads keep theirs
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        count = window_count(audio.shape[0], self.hop, self.width, complete_only)
        starts = [k * self.hop for k in range(first, count)]
        pieces = np.zeros((len(starts), self.width), np.float32)
        for i, start in enumerate(starts):
            piece = audio[start: start + self.width]
            pieces[i, : piece.shape[0]] = piece
        spans = np.array([[s, min(s + self.width, audio.shape[0])] for s in starts], dtype=np.int64).reshape(-1, 2)
        return self.mel(pieces), spans

    def embed(self, features: np.ndarray) -> np.ndarray:
        import torch

        if features.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            return self._encoder(torch.from_numpy(features)).numpy().astype(np.float32)


def embed_windows(encoder: SpeakerEncoder, audio: np.ndarray, first: int = 0, complete_only: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(n, dim)`` unit embeddings and ``(n, 2)`` spans of one audio's windows (``features`` then ``embed``)."""
    features, spans = encoder.features(audio, first, complete_only)
    return encoder.embed(features), spans


def load_speaker_model(name: str) -> SpeakerEncoder:
    """A speaker model by name (``SPEAKER_MODELS``); raises ValueError for another name."""
    if name == "resemblyzer":
        return ResemblyzerEncoder()
    raise ValueError(f"unknown speaker model {name!r}; this server knows {', '.join(SPEAKER_MODELS)}")
