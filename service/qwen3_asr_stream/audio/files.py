"""Reading audio files into 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qwen3_asr_client.audio_files import AudioFileError, read_audio as read_audio_file

from . import SAMPLE_RATE

__all__ = ["AudioFileError", "read_audio", "split_long_audio", "to_mono_16k"]


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Downmix ``(frames,)`` or ``(frames, channels)`` audio and resample it to 16 kHz with soxr.

    Float audio outside [-1, 1] is scaled down by its peak (as the official
    implementation does), then clipped.
    """
    if sample_rate <= 0:
        raise AudioFileError(f"sample rate must be positive, got {sample_rate}")
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float32)
    elif audio.ndim != 1:
        raise AudioFileError(f"audio must be 1-D or (frames, channels), got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioFileError("audio contains NaN or infinite samples")
    if sample_rate != SAMPLE_RATE and audio.size:
        import soxr

        audio = soxr.resample(audio, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def read_audio(path: str | Path) -> np.ndarray:
    """An audio file as 16 kHz mono float32: the client's reader (WAV), or PyAV for any other
    file FFmpeg reads, then downmix and resample. Raises AudioFileError."""
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file {str(path)!r} does not exist")
    audio = read_audio_file(path)
    fmt = audio.format
    if not fmt.raw:  # a compressed file: decoded here by PyAV (the client sends it as it is)
        from .codecs import InvalidAudio
        from .containers import decode_file

        try:
            samples, rate = decode_file(audio.data, max_seconds=float("inf"))
        except InvalidAudio as exc:
            raise AudioFileError(f"{path}: {exc}") from None
        return to_mono_16k(samples, rate)
    if fmt.encoding == "LINEAR16":
        samples = np.frombuffer(audio.data, "<i2").astype(np.float32) * np.float32(1.0 / 32768.0)
    elif fmt.encoding in ("MULAW", "ALAW"):
        from . import g711

        samples = g711.decode(audio.data, g711.ULAW if fmt.encoding == "MULAW" else g711.ALAW)
    else:
        samples = np.frombuffer(audio.data, "<f4")
    return to_mono_16k(samples.reshape(-1, fmt.channels), fmt.sample_rate)


def split_long_audio(audio: np.ndarray, max_seconds: float, search_seconds: float = 5.0,
                     min_seconds: float = 0.5, window_ms: float = 100.0) -> list[tuple[np.ndarray, float]]:
    """Cut audio longer than ``max_seconds`` into pieces at quiet points.

    Each cut is placed at the quietest ``window_ms`` stretch within ``search_seconds``
    of the nominal cut (the same rule as the official implementation, so pieces
    match its pieces). Pieces shorter than ``min_seconds`` are zero-padded at the
    end (a single uncut piece comes back as it is). Returns ``(piece, offset_seconds)``; the pieces cover the audio exactly.
    """
    rate = SAMPLE_RATE
    total = int(audio.shape[0])
    max_len = int(max_seconds * rate)
    if total <= max_len:
        return [(audio, 0.0)]
    reach = int(search_seconds * rate)
    win = max(4, int(window_ms / 1000.0 * rate))
    pieces, start = [], 0
    while total - start > max_len:
        nominal = start + max_len
        lo, hi = max(start, nominal - reach), min(total, nominal + reach)
        if hi - lo <= win:
            cut = nominal
        else:
            magnitude = np.abs(audio[lo:hi])
            energy = np.convolve(magnitude, np.ones(win, dtype=np.float32), mode="valid")
            quiet = int(np.argmin(energy))
            cut = lo + quiet + int(np.argmin(magnitude[quiet : quiet + win]))
        cut = min(max(cut, start + 1), total)
        pieces.append((audio[start:cut], start / rate))
        start = cut
    pieces.append((audio[start:], start / rate))
    min_len = int(min_seconds * rate)
    return [
        (np.pad(p, (0, min_len - p.shape[0])) if p.shape[0] < min_len else p, offset) for p, offset in pieces
    ]
