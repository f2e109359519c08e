"""Audio front end: Whisper-style log-mel features, as pure torch functions.

Equal to the official feature extractor (``WhisperFeatureExtractor`` with the
checkpoint's ``preprocessor_config.json``): 128 Slaney mel bins, a 400-sample
periodic Hann window, hop 160 (10 ms per frame), log10 of the power clamped at
1e-10, a floor at (max - 8), then ``(x + 4) / 4``.

The floor uses the maximum over the whole input, so one frame's value can
depend on audio far away from it. Callers that compute features piece by piece
(the streaming engine) must say what they do about it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from . import SAMPLE_RATE  # noqa: E402  (one constant, torch-free)
N_FFT = 400  # samples per frame (25 ms), also the Hann window's length
HOP_LENGTH = 160  # 10 ms
HALF_WINDOW = N_FFT // 2  # samples each side of a frame's centre (torch.stft(center=True))
N_MELS = 128
LOG_EPSILON = 1e-10  # mel power clamped here before log10
LOG_FLOOR_RANGE = 8.0  # dB/10 below the maximum that are kept
LOG_OFFSET = 4.0  # features = (log10 mel + LOG_OFFSET) / LOG_SCALE
LOG_SCALE = 4.0


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    # Linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
    min_log_hz, min_log_mel, log_step = 1000.0, 15.0, math.log(6.4) / 27.0
    mel = 3.0 * hz / 200.0
    high = hz >= min_log_hz
    mel[high] = min_log_mel + np.log(hz[high] / min_log_hz) / log_step
    return mel


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    min_log_hz, min_log_mel, log_step = 1000.0, 15.0, math.log(6.4) / 27.0
    hz = 200.0 * mel / 3.0
    high = mel >= min_log_mel
    hz[high] = min_log_hz * np.exp(log_step * (mel[high] - min_log_mel))
    return hz


@functools.lru_cache(maxsize=8)
def mel_filters(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Slaney-normalised triangular filters on the Slaney mel scale, ``(n_fft // 2 + 1, n_mels)`` float32."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_edges = np.linspace(
        _hz_to_mel_slaney(np.array([0.0]))[0], _hz_to_mel_slaney(np.array([sample_rate / 2]))[0], n_mels + 2
    )
    hz_edges = _mel_to_hz_slaney(mel_edges)
    widths = np.diff(hz_edges)
    slopes = hz_edges[None, :] - fft_freqs[:, None]  # (freqs, n_mels + 2)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    filters *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[None, :]
    return torch.from_numpy(filters.astype(np.float32))


def power_spectrum(waveforms: torch.Tensor, *, center: bool = True) -> torch.Tensor:
    """Power of the Hann-windowed STFT: ``(..., samples)`` -> ``(..., n_fft // 2 + 1, frames)``.

    ``center=True`` reflects ``HALF_WINDOW`` samples at both ends (``1 + samples // HOP_LENGTH``
    frames); ``center=False`` takes the frames that fit (the caller padded already).
    """
    window = torch.hann_window(N_FFT, device=waveforms.device)
    spectrum = torch.stft(waveforms, N_FFT, HOP_LENGTH, window=window, center=center, return_complex=True)
    return spectrum.abs() ** 2


def log10_mel(power: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """Pre-floor log10 mel power: ``(..., n_fft // 2 + 1, frames)`` -> ``(..., n_mels, frames)``."""
    mel = mel_filters(n_mels).to(power.device).T @ power
    return torch.clamp(mel, min=LOG_EPSILON).log10()


def log_floor(peak: torch.Tensor | float) -> torch.Tensor | float:
    """The floor for a log10 mel whose maximum (over every frame of the input) is ``peak``."""
    return peak - LOG_FLOOR_RANGE


def scale_log_mel(raw: torch.Tensor, floor: torch.Tensor | float) -> torch.Tensor:
    """Features from pre-floor log10 mel: values under ``floor`` raised to it, then scaled
    (``floor`` a float, or a tensor that broadcasts against ``raw``)."""
    floored = torch.maximum(raw, floor) if isinstance(floor, torch.Tensor) else torch.clamp(raw, min=floor)
    return (floored + LOG_OFFSET) / LOG_SCALE


def log_mel(waveforms: torch.Tensor, n_mels: int = N_MELS) -> torch.Tensor:
    """Log-mel features of a batch of 16 kHz waveforms.

    Args:
        waveforms: ``(batch, samples)`` or ``(samples,)`` float, in [-1, 1].
    Returns:
        ``(batch, n_mels, samples // HOP_LENGTH)`` float32 (no batch dim for 1-D input). The
        floor is taken per row over all of that row's frames, padding included.
    """
    squeeze = waveforms.dim() == 1
    batch = waveforms.unsqueeze(0) if squeeze else waveforms
    power = power_spectrum(batch.to(torch.float32))[..., :-1]  # the last frame is dropped
    logs = log10_mel(power, n_mels)  # (batch, n_mels, frames)
    features = scale_log_mel(logs, log_floor(logs.amax(dim=(1, 2), keepdim=True)))
    return features[0] if squeeze else features


def batch_features(waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Features of several waveforms computed together, as the official processor does.

    The waveforms are zero-padded to the longest; each row's frame count is then
    ``ceil(n / HOP_LENGTH)``, except that when the padded length is not a multiple of
    the hop the last frame column is dropped for every row (the official attention
    mask rule). A shorter row therefore sees zero padding in its last frames
    instead of the reflection a lone waveform gets: this is what the official batch
    path computes, and parity with it is what this function is for.

    Returns:
        ``(batch, n_mels, padded // HOP_LENGTH)`` features and the valid frame count per row.
    """
    if not waveforms:
        raise ValueError("batch_features needs at least one waveform")
    longest = max(int(w.shape[-1]) for w in waveforms)
    padded = torch.zeros(len(waveforms), longest, dtype=torch.float32, device=waveforms[0].device)
    for row, wave in enumerate(waveforms):
        padded[row, : wave.shape[-1]] = wave
    features = log_mel(padded)
    total = features.shape[-1]
    counts = [min(-(-int(w.shape[-1]) // HOP_LENGTH), total) for w in waveforms]
    return features, counts
