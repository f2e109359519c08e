"""Read an audio file into the bytes and format the server takes, without decoding or resampling.

WAV files of 16-bit PCM, 32-bit float or G.711 (mu-law, A-law) are read by a small RIFF
reader here (the standard library's ``wave`` reads integer PCM only) and sent as raw
samples. Any other file is sent as it is, compressed, and the server decodes it: an
Ogg/Opus file as OGG_OPUS, FLAC as FLAC, anything else (WebM, MP3, M4A, MP4, Ogg
Vorbis, WAV of other sample formats, ...) as CONTAINER, which the server recognizes
from the bytes. So the client needs no codec library (no PyAV, no soundfile).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .results import AudioFormat

_PCM, _IEEE_FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
_CONVERT_HINT = "convert it to 16-bit PCM WAV (e.g. `ffmpeg -i IN -ac 1 -c:a pcm_s16le OUT.wav`)"


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
        """"LINEAR16", "FLOAT32", "MULAW" or "ALAW" (G.711), or None for another sample format
        (sent to the server as a CONTAINER file)."""
        return {(_PCM, 16): "LINEAR16", (_IEEE_FLOAT, 32): "FLOAT32", (_MULAW, 8): "MULAW",
                (_ALAW, 8): "ALAW"}.get((self.format_tag, self.bits))


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
    """Read a WAV file (16-bit PCM or 32-bit float) as raw samples; any other file as its
    compressed bytes with the encoding the server decodes it by (see the module's docstring)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise AudioFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if blob[:4] == b"RIFF" and blob[8:12] == b"WAVE":
        audio = _read_wav(blob, path)
        if audio is not None:
            return audio
    encoding = container_encoding(blob)
    if encoding is None:
        raise AudioFileError(f"{path}: not an audio file this client recognizes (WAV, Ogg, Opus, WebM, FLAC, MP3, "
                             f"M4A/MP4, MPEG, AIFF, CAF); {_CONVERT_HINT}")
    return AudioData(blob, AudioFormat(sample_rate=0, channels=1, encoding=encoding))


def container_encoding(head: bytes) -> str | None:
    """The encoding a compressed file is sent with, from its first bytes; None when they are
    no audio container's signature."""
    if head[:4] == b"OggS" and head[28:36] == b"OpusHead":
        return "OGG_OPUS"
    if head[:4] == b"fLaC":
        return "FLAC"
    mpeg_frame = len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # MP3 or AAC (ADTS)
    signatures = (head[:4] in (b"OggS", b"\x1a\x45\xdf\xa3", b"RIFF", b"FORM", b"caff", b"\x00\x00\x01\xba")
                  or head[:3] == b"ID3" or head[4:8] == b"ftyp" or mpeg_frame)
    return "CONTAINER" if signatures else None


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
