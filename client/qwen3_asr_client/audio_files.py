"""Read an audio file into the bytes and format the server takes, without resampling.

WAV files of 16-bit PCM or 32-bit float are read by a small RIFF reader here (the
standard library's ``wave`` reads integer PCM only, not float WAV). Any other file
or WAV sample format is decoded with ``soundfile`` when it is installed (to 32-bit
float), otherwise it is an ``AudioFileError`` that says how to convert it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .results import AudioFormat

_PCM, _IEEE_FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_CONVERT_HINT = "convert it to 16-bit PCM WAV (e.g. `ffmpeg -i IN -ac 1 -c:a pcm_s16le OUT.wav`)"
_SOUNDFILE_HINT = "or install soundfile (`pip install soundfile`) to read FLAC, OGG and other WAV formats"


class AudioFileError(ValueError):
    """The file cannot be read as audio the server accepts."""


@dataclass(frozen=True)
class AudioData:
    data: bytes
    format: AudioFormat

    @property
    def duration_s(self) -> float:
        return len(self.data) / self.format.bytes_per_second

    def chunks(self, chunk_ms: float = 100.0) -> Iterator[bytes]:
        """Consecutive pieces of chunk_ms each (the last may be shorter)."""
        size = self.format.chunk_bytes(chunk_ms)
        for i in range(0, len(self.data), size):
            yield self.data[i : i + size]


def read_audio(path: str | Path) -> AudioData:
    """Read a WAV file (16-bit PCM or 32-bit float), or any format soundfile reads."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                f.seek(0)
                audio = _read_wav(f.read(), path)
                if audio is not None:
                    return audio
    except OSError as exc:
        raise AudioFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return _read_with_soundfile(path)


def _read_wav(blob: bytes, path: Path) -> AudioData | None:
    """Parse RIFF chunks; None for a valid WAV of another sample format."""
    fmt = data = None
    pos = 12
    while pos + 8 <= len(blob):
        chunk_id, size = struct.unpack_from("<4sI", blob, pos)
        body = blob[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            data = body
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    if fmt is None or len(fmt) < 16 or data is None:
        raise AudioFileError(f"{path} is not a valid WAV file (no fmt or data chunk)")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the subformat GUID
    if tag == _PCM and bits == 16:
        encoding = "LINEAR16"
    elif tag == _IEEE_FLOAT and bits == 32:
        encoding = "FLOAT32"
    else:
        return None
    if channels < 1 or block_align != channels * bits // 8:
        raise AudioFileError(f"{path}: inconsistent WAV header ({channels} channels, block {block_align})")
    data = data[: len(data) - len(data) % block_align]
    return AudioData(data, AudioFormat(sample_rate=rate, channels=channels, encoding=encoding))


def _read_with_soundfile(path: Path) -> AudioData:
    try:
        import soundfile
    except ImportError:
        raise AudioFileError(
            f"{path}: only 16-bit PCM and 32-bit float WAV can be read without soundfile; "
            f"{_CONVERT_HINT} {_SOUNDFILE_HINT}"
        ) from None
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own error types and RuntimeError
        raise AudioFileError(f"{path}: not audio that libsndfile can decode ({exc}); {_CONVERT_HINT}") from exc
    return AudioData(
        samples.astype("<f4").tobytes(),
        AudioFormat(sample_rate=int(rate), channels=samples.shape[1], encoding="FLOAT32"),
    )
