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
N_FFT = 400
HOP_LENGTH = 160  # 10 ms
N_MELS = 128
LOG_FLOOR_RANGE = 8.0  # dB/10 below the maximum that are kept


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
    batch = batch.to(torch.float32)
    window = torch.hann_window(N_FFT, device=batch.device)
    spectrum = torch.stft(batch, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = spectrum[..., :-1].abs() ** 2  # (batch, n_fft // 2 + 1, frames); the last frame is dropped
    filters = mel_filters(n_mels).to(batch.device)
    mel = filters.T @ power
    logs = torch.clamp(mel, min=1e-10).log10()
    peak = logs.amax(dim=(1, 2), keepdim=True)
    logs = torch.maximum(logs, peak - LOG_FLOOR_RANGE)
    features = (logs + 4.0) / 4.0
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
