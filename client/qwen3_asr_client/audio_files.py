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


class WavError(ValueError):
    """A RIFF/WAVE header that cannot be read."""


class WavIncomplete(WavError):
    """The bytes end before the header's data chunk begins."""


@dataclass(frozen=True)
class WavHeader:
    """What a RIFF/WAVE header says (the chunks up to the start of the samples)."""

    format_tag: int  # 1 PCM, 3 IEEE float, ... (an extensible header's subformat)
    channels: int
    sample_rate: int
    block_align: int
    bits: int
    data_offset: int  # where the samples start
    data_end: int | None  # where the data chunk ends by its size; None: writers that stream leave it unset

    @property
    def encoding(self) -> str | None:
        """"LINEAR16" or "FLOAT32", or None for a sample format the server does not take."""
        if self.format_tag == _PCM and self.bits == 16:
            return "LINEAR16"
        if self.format_tag == _IEEE_FLOAT and self.bits == 32:
            return "FLOAT32"
        return None


def parse_wav_header(blob: bytes) -> WavHeader | None:
    """The header at the start of ``blob``, read up to its data chunk; None when ``blob`` does
    not start with RIFF/WAVE. Raises :class:`WavIncomplete` when no data chunk starts in
    ``blob``, :class:`WavError` when no fmt chunk comes before it."""
    if blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        return None
    fmt, pos = None, 12
    while pos + 8 <= len(blob):
        chunk_id, size = struct.unpack_from("<4sI", blob, pos)
        if chunk_id == b"data":
            break
        if chunk_id == b"fmt ":
            fmt = blob[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    else:
        raise WavIncomplete("no data chunk")
    if fmt is None or len(fmt) < 16:
        raise WavError("no fmt chunk before the data chunk")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the subformat GUID
    start = pos + 8
    # Writers that stream a file leave the data size at 0 or 0xFFFFFFFF.
    end = start + size if 0 < size < 0xFFFFFFFF else None
    return WavHeader(tag, channels, rate, block_align, bits, start, end)


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
    """The samples of a WAV file; None for a valid WAV of another sample format."""
    try:
        header = parse_wav_header(blob)
    except WavError as exc:
        raise AudioFileError(f"{path} is not a valid WAV file ({exc})") from None
    assert header is not None  # the caller saw RIFF/WAVE
    encoding = header.encoding
    if encoding is None:
        return None
    channels, block_align = header.channels, header.block_align
    if channels < 1 or block_align != channels * header.bits // 8:
        raise AudioFileError(f"{path}: inconsistent WAV header ({channels} channels, block {block_align})")
    data = blob[header.data_offset : header.data_end]
    data = data[: len(data) - len(data) % block_align]
    return AudioData(data, AudioFormat(sample_rate=header.sample_rate, channels=channels, encoding=encoding))


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
