"""Kaldi log-mel filter banks in torch: the front end of the WeSpeaker speaker models.

The same computation as Kaldi's ``compute-fbank-feats`` (and ``torchaudio.compliance.kaldi.fbank``)
for the options WeSpeaker uses: frames of 25 ms every 10 ms that fit wholly in the audio
(``snip_edges``), each with its DC offset removed, pre-emphasized (0.97), Hamming-windowed and
zero-padded to 512 samples; the power spectrum through 80 triangular mel filters between 20 Hz and
the Nyquist frequency, then the natural log (floored at float32's epsilon). No dither (inference).
``tests/test_wespeaker.py`` checks it against torchaudio's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

PREEMPHASIS = 0.97
LOW_HZ = 20.0  # Kaldi's default low edge of the first mel filter


@dataclass(frozen=True)
class FbankOptions:
    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.num_mel_bins <= 0:
            raise ValueError("sample_rate and num_mel_bins must be positive")
        if not 0 < self.frame_shift_ms <= self.frame_length_ms:
            raise ValueError("frame_shift_ms must be positive and at most frame_length_ms")

    @property
    def window(self) -> int:  # samples of a frame (400 at 16 kHz)
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def shift(self) -> int:  # samples between frames (160 at 16 kHz)
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def padded(self) -> int:  # the FFT size: the window rounded up to a power of two (512)
        return 1 << (self.window - 1).bit_length()

    def frames(self, samples: int) -> int:
        """Frames of ``samples`` of audio (whole frames only)."""
        return 0 if samples < self.window else 1 + (samples - self.window) // self.shift


def _mel(hz: float) -> float:
    return 1127.0 * math.log(1.0 + hz / 700.0)


@lru_cache(maxsize=4)
def mel_filters(options: FbankOptions) -> torch.Tensor:
    """``(num_mel_bins, padded // 2 + 1)`` Kaldi's triangular filters, flat on the mel scale, over
    the FFT bins (the Nyquist bin gets none, as in Kaldi). In float32 as Kaldi's reference computes them."""
    low, high = _mel(LOW_HZ), _mel(options.sample_rate / 2)
    delta = (high - low) / (options.num_mel_bins + 1)
    k = torch.arange(options.num_mel_bins, dtype=torch.float32)[:, None]
    left, center, right = low + k * delta, low + (k + 1.0) * delta, low + (k + 2.0) * delta
    hz = options.sample_rate / options.padded * torch.arange(options.padded // 2, dtype=torch.float32)
    mel = (1127.0 * torch.log(1.0 + hz / 700.0))[None, :]
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    filters = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(filters, (0, 1))


@lru_cache(maxsize=4)
def _hamming(window: int) -> torch.Tensor:
    n = torch.arange(window, dtype=torch.float64)
    return (0.54 - 0.46 * torch.cos(2 * math.pi * n / (window - 1))).float()


def fbank(audio: torch.Tensor, options: FbankOptions = FbankOptions()) -> torch.Tensor:
    """``(batch, samples)`` float audio at ``options.sample_rate`` (in Kaldi's scale: int16 values) ->
    ``(batch, frames, num_mel_bins)`` log mel energies."""
    frames = audio.unfold(-1, options.window, options.shift)  # (batch, frames, window)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = (frames - PREEMPHASIS * previous) * _hamming(options.window).to(audio.device)
    power = torch.fft.rfft(frames, n=options.padded).abs().pow(2)  # (batch, frames, padded // 2 + 1)
    energies = power @ mel_filters(options).to(audio.device).T
    return torch.clamp(energies, min=torch.finfo(torch.float32).eps).log()
