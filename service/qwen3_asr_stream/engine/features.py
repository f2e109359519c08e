"""Log-mel features of a growing utterance, one encoder attention window at a time.

A frame's power spectrum depends only on 400 samples around it, so the frames of
a window are final once the audio reaches 200 samples past its last frame; the
window is then "completed" and its raw (pre-floor) log-mel is stored. The open
(last) window is recomputed at every update, with reflection past the current
end of the audio exactly as a from-scratch computation does.

Where results can differ from re-running everything: the floor ``max - 8`` uses
the maximum over ALL frames of the utterance, so a louder frame arriving later
changes the floor, and with it any earlier frame quieter than the new floor. We
keep each completed window's minimum raw value and the floor it was encoded
with; when the floor moves past a window's minimum, that window is marked stale
and re-encoded (and the decoder cache from it on is rebuilt). Features are thus
always exactly those of a from-scratch computation; the cost is an occasional
re-encode while the utterance's loudest frame keeps rising.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..audio.frontend import HALF_WINDOW, HOP_LENGTH, log10_mel, log_floor, power_spectrum


def raw_log_mel(samples: np.ndarray, first_frame: int, end_frame: int, n_mels: int) -> torch.Tensor:
    """Pre-floor log10 mel power of frames ``[first_frame, end_frame)`` of ``samples``.

    Frame ``j`` covers samples ``[160 j - 200, 160 j + 200)`` with reflection at both
    ends of ``samples``, as ``torch.stft(center=True)`` pads a whole waveform.
    Returns ``(n_mels, end_frame - first_frame)`` float32.
    """
    n = samples.shape[0]
    start = HOP_LENGTH * first_frame - HALF_WINDOW
    stop = HOP_LENGTH * (end_frame - 1) + HALF_WINDOW
    index = np.arange(start, stop)
    index = np.where(index < 0, -index, index)
    index = np.where(index >= n, 2 * (n - 1) - index, index)
    segment = torch.from_numpy(samples[index].astype(np.float32, copy=False))
    return log10_mel(power_spectrum(segment, center=False), n_mels)


@dataclass
class CompletedWindow:
    raw: torch.Tensor  # (n_mels, window_frames) pre-floor
    raw_min: float
    raw_max: float
    floor_used: float | None = None  # floor of the features the encoder saw; None = not encoded yet

    def is_stale(self, floor: float) -> bool:
        if self.floor_used is None:
            return True
        if floor == self.floor_used:
            return False
        return self.raw_min < max(floor, self.floor_used)


class WindowedFeatures:
    """Per-utterance feature state. Not thread-safe: the engine thread owns it."""

    def __init__(self, window_frames: int, n_mels: int) -> None:
        self.window_frames = window_frames
        self.n_mels = n_mels
        self.windows: list[CompletedWindow] = []

    @staticmethod
    def frames(samples: int) -> int:
        return samples // HOP_LENGTH

    @staticmethod
    def final_frames(samples: int) -> int:
        """Frames whose 400 samples all exist (later audio does not change them)."""
        return max(0, (samples - HALF_WINDOW) // HOP_LENGTH + 1)

    def completed_count(self, samples: int) -> int:
        """Windows whose every frame is final for this much audio (pure: safe from any thread)."""
        return self.final_frames(samples) // self.window_frames

    def completion_samples(self, index: int) -> int:
        """Audio length at which window ``index`` completes: its last frame, centred at
        ``HOP_LENGTH * ((index + 1) * window_frames - 1)``, has its 200 samples of right context
        (pure: safe from any thread)."""
        return HOP_LENGTH * (index + 1) * self.window_frames - HOP_LENGTH + HALF_WINDOW

    def update(self, audio: np.ndarray) -> tuple[torch.Tensor, float]:
        """Store newly completed windows and compute the open window.

        Returns the open window's raw log-mel ``(n_mels, frames)`` (at least one frame
        once the audio holds a frame) and the floor a from-scratch computation over
        the whole audio would use.
        """
        total_frames = self.frames(audio.shape[0])
        complete = self.completed_count(audio.shape[0])
        while len(self.windows) < complete:
            k = len(self.windows)
            raw = raw_log_mel(audio, k * self.window_frames, (k + 1) * self.window_frames, self.n_mels)
            self.windows.append(CompletedWindow(raw, float(raw.min()), float(raw.max())))
        open_start = complete * self.window_frames
        if total_frames > open_start:
            open_raw = raw_log_mel(audio, open_start, total_frames, self.n_mels)
        else:
            open_raw = torch.zeros(self.n_mels, 0)
        peak = max([w.raw_max for w in self.windows] + ([float(open_raw.max())] if open_raw.numel() else []),
                   default=float("-inf"))
        return open_raw, log_floor(peak)

    def stale_from(self, floor: float) -> int:
        """Index of the first completed window that must be (re-)encoded for ``floor``."""
        for index, window in enumerate(self.windows):
            if window.is_stale(floor):
                return index
        return len(self.windows)
