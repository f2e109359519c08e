"""Compressed audio as its bytes arrive: Ogg/Opus, WebM/Opus, FLAC and WAV streams, and whole files.

    reader = open_stream(AudioEncoding.OGG_OPUS)      # or sniff(first_bytes) for CONTAINER
    frames = reader.feed(chunk)     # (n, channels) float32 at reader.rate; n may be 0
    frames = reader.finish()        # end of input; raises CorruptStream for a cut page / frame

How a stream is decoded incrementally
-------------------------------------
FFmpeg's demuxers pull their input through a blocking read callback and treat a short
read as the end of the file, so they cannot be handed bytes "as they arrive" without a
thread per stream blocked inside FFmpeg, and they resynchronise silently past damage.
Instead the container is split into codec packets here, by a small parser per format
that keeps only the bytes of the one unfinished page / block / frame, and PyAV decodes
each packet with a bare ``CodecContext`` (libavcodec's Opus and FLAC decoders):

- Ogg (RFC 3533 / 7845): pages are checked with their CRC-32; packets are joined across
  pages; the OpusHead packet is the decoder's extradata, so the decoder drops the
  pre-skip; the last page's granule position trims the encoder's end padding.
- WebM / Matroska: EBML elements are read flat: Segment, Cluster and BlockGroup are
  entered, Tracks and blocks are read whole, anything else known is skipped by its size
  without being kept; an element ID that WebM does not have means corrupt or misaligned
  bytes. CodecPrivate (the OpusHead) is the extradata; DiscardPadding trims the end.
- FLAC (RFC 9639): the STREAMINFO block is the extradata; a frame ends where the next
  frame header starts whose CRC-8 holds and whose frame / sample number is the next one
  (so a sync code inside frame data is not taken for a header); before that header has
  begun, the bytes held are tried as a whole frame (its CRC-16 must hold and its samples
  be the header's block), so a frame comes out when its last byte does; each frame is
  decoded with its CRC-16 checked, so damage and lost frames are errors, not silence.
- WAV (RIFF): the header says the format; the samples are PCM (16-bit, float, G.711).
- MP3 (``mp3``, under CONTAINER): frames split by their headers' lengths; the LAME tag's
  encoder delay and padding are removed (sample for sample what FFmpeg's demuxer gives).

Cut the input at any byte offset: only whole pages / blocks / frames are decoded, and
the output does not depend on the cut.

Bounds per stream (readers.py)
-----------------
Memory: the unfinished unit only, at most ``MAX_UNIT_BYTES`` (1 MiB; an Ogg page is at
most 65,307 bytes, an Opus block a few hundred, a FLAC frame of 16-bit stereo 4096
samples at most ~16 KB), plus the decoder state (libopus: ~30 KB). Time: linear in the
bytes given; one call decodes at most ``MAX_CALL_SECONDS`` of audio (a guard against
tiny FLAC frames that expand enormously). Each stream has its own parser and decoder,
so one stream's damaged bytes end that stream only (``CorruptStream``).

Whole files (``decode_file``): any container FFmpeg reads, through ``av.open`` on the
bytes in memory (MP3 encoder delay, AAC priming and edit lists are applied by FFmpeg).
"""

from __future__ import annotations

import io

import av
import numpy as np

from . import g711
from .codecs import AudioEncoding, AudioTooLong, InvalidAudio
from .flac import FlacReader
from .mp3 import Mp3Reader, frame_header
from .ogg import OggOpusReader
from .readers import MAX_CONTAINER_CHANNELS, MAX_UNIT_BYTES, StreamReader, frame_array
from .webm import WebmOpusReader


__all__ = ["MAX_UNIT_BYTES", "STREAM_READERS", "FlacReader", "OggOpusReader", "StreamReader", "WavReader",
           "WebmOpusReader", "WholeFileReader", "Mp3Reader", "decode_file", "sniff"]


# -- WAV -----------------------------------------------------------------------------------------

class WavReader(StreamReader):
    """A RIFF/WAVE stream: 16-bit PCM, 32-bit float, 8-bit mu-law / A-law samples."""

    name = "WAV"
    _TAGS = {(1, 16): (np.dtype("<i2"), None), (3, 32): (np.dtype("<f4"), None),
             (7, 8): (None, g711.ULAW), (6, 8): (None, g711.ALAW)}

    def __init__(self) -> None:
        super().__init__()
        self._kind = None
        self._left: int | None = None

    def _unit(self) -> str:
        return "sample frame" if self._kind else "header"

    def _parse(self, final: bool) -> None:
        from qwen3_asr_client.audio_files import WavError, WavIncomplete, parse_wav_header

        if self._kind is None:
            try:
                header = parse_wav_header(bytes(self._buf[:1 << 16]))
            except WavIncomplete:
                if len(self._buf) > 1 << 16:
                    raise InvalidAudio("WAV: no data chunk in the first 64 KiB") from None
                return
            except WavError as exc:
                raise InvalidAudio(f"the WAV header cannot be read: {exc}") from None
            if header is None:
                raise InvalidAudio("the data is not WAV: it does not start with RIFF/WAVE")
            kind = self._TAGS.get((header.format_tag, header.bits))
            if kind is None or not 1 <= header.channels <= MAX_CONTAINER_CHANNELS:
                raise InvalidAudio(f"WAV with format tag {header.format_tag}, {header.bits}-bit samples and "
                                   f"{header.channels} channels is not supported; send 16-bit PCM, float, "
                                   f"mu-law or A-law")
            self._kind, self.rate, self.channels = kind, header.sample_rate, header.channels
            self._frame = header.bits // 8 * header.channels
            self._left = None if header.data_end is None else header.data_end - header.data_offset
            self._consume(header.data_offset)
        take = len(self._buf) if self._left is None else min(self._left, len(self._buf))
        take -= take % self._frame
        if self._left is not None:
            self._left -= take
        data = self._consume(take)
        dtype, table = self._kind
        samples = g711.decode(data, table) if table is not None else np.frombuffer(data, dtype).astype(np.float32)
        if dtype is not None and dtype.kind == "i":
            samples *= np.float32(1 / 32768)
        if len(samples):
            self._emit(samples.reshape(-1, self.channels))
        if self._left is not None and self._left < self._frame:
            self._consume(len(self._buf))  # chunks after the data chunk are not audio


# -- choosing a reader ---------------------------------------------------------------------------

STREAM_READERS = {AudioEncoding.OGG_OPUS: OggOpusReader, AudioEncoding.WEBM_OPUS: WebmOpusReader,
                  AudioEncoding.FLAC: FlacReader}


def sniff(head: bytes) -> type[StreamReader] | None:
    """The stream reader for data starting with ``head`` (at least 12 bytes); None for a
    container that is read as a whole file (MP4 / M4A, MPEG, ...)."""
    if head.startswith(b"OggS"):
        return OggOpusReader
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WebmOpusReader
    if head.startswith(b"fLaC"):
        return FlacReader
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WavReader
    if head.startswith(b"ID3") or frame_header(head, 0):
        return Mp3Reader  # (after an ID3 tag, something else falls back to the whole-file decode)
    return None


class WholeFileReader(StreamReader):
    """A container that cannot be decoded as it arrives (MP4 / M4A, MPEG, Vorbis, ...): the bytes
    are kept (at most ``max_bytes``) and decoded whole at the end of input."""

    name = "audio file"

    def __init__(self, max_bytes: int, max_seconds: float) -> None:
        super().__init__()
        self.max_bytes, self.max_seconds = max_bytes, max_seconds

    def feed(self, data: bytes) -> np.ndarray:
        if len(self._buf) + len(data) > self.max_bytes:
            raise InvalidAudio(f"this audio is in a container that is decoded whole (not Ogg, WebM, FLAC, "
                               f"WAV or MP3) and is larger than {self.max_bytes} bytes; send it as Ogg/Opus, WebM/Opus "
                               f"or FLAC to stream it, or in shorter pieces")
        self._buf += data
        return np.zeros((0, 1), np.float32)

    def finish(self) -> np.ndarray:
        data, self._buf = bytes(self._buf), bytearray()
        if not data:
            return np.zeros((0, 1), np.float32)
        samples, self.rate = decode_file(data, self.max_seconds)
        self.channels = samples.shape[1]
        return samples


def decode_file(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    """A whole file in any container FFmpeg reads -> ((n, channels) float32, rate).

    Raises InvalidAudio: not audio FFmpeg reads, no audio track, damaged, longer than
    ``max_seconds``."""
    try:
        container = av.open(io.BytesIO(data), "r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise InvalidAudio(f"the file is not audio this server reads ({exc.strerror}); send FLAC, MP3, M4A, "
                           f"MP4, MPEG, Ogg, WAV or WebM") from None
    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["nothing"]
            raise InvalidAudio(f"the file has no audio track (it holds {', '.join(kinds)}); send a recording "
                               f"with sound")
        stream = container.streams.audio[0]
        parts, frames, rate = [], 0, stream.codec_context.sample_rate
        try:
            for frame in container.decode(stream):
                rate = frame.sample_rate
                parts.append(frame_array(frame))
                frames += frame.samples
                if frames > max_seconds * rate:
                    raise AudioTooLong(f"the recording is longer than this server's limit of {max_seconds:.0f} "
                                       f"s per request; stream longer audio instead")
        except av.FFmpegError as exc:
            raise InvalidAudio(f"the file is damaged: {exc.strerror} after {frames / max(rate, 1):.2f} s of "
                               f"audio; send the whole, undamaged file") from None
    if not parts or not rate:
        raise InvalidAudio("the file's audio track holds no audio")
    channels = min(p.shape[1] for p in parts)
    return np.concatenate([p[:, :channels] for p in parts]), int(rate)
