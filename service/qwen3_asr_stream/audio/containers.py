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
  (so a sync code inside frame data is not taken for a header); each frame is decoded
  with CRC checking, so damage and lost frames are errors, not silence.
- WAV (RIFF): the header says the format; the samples are PCM (16-bit, float, G.711).

Cut the input at any byte offset: only whole pages / blocks / frames are decoded, and
the output does not depend on the cut.

Bounds per stream
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
import struct
import zlib

import av
import numpy as np

from .codecs import AudioEncoding, AudioTooLong, CorruptStream, InvalidAudio, NotStreamable
from . import g711

MAX_UNIT_BYTES = 1 << 20
MAX_CALL_SECONDS = 120.0
OPUS_RATE = 48_000  # Opus always decodes at 48 kHz
MAX_CONTAINER_CHANNELS = 8


def frame_array(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame -> (n, channels) float32 in [-1, 1]."""
    a = frame.to_ndarray()
    channels = frame.layout.nb_channels
    a = a.T if frame.format.is_planar else a.reshape(-1, channels)
    if a.dtype.kind == "f":
        return np.ascontiguousarray(a, np.float32)
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / np.float32(128.0)
    return a.astype(np.float32) / np.float32(2 ** (8 * a.dtype.itemsize - 1))


class StreamReader:
    """A container stream split into packets and decoded; ``rate`` / ``channels`` are None
    until the header is read."""

    name = ""

    def __init__(self) -> None:
        self.rate: int | None = None
        self.channels: int | None = None
        self.offset = 0  # bytes of the stream consumed before _buf
        self._buf = bytearray()
        self._out: list[np.ndarray] = []
        self._out_frames = 0

    def feed(self, data: bytes) -> np.ndarray:
        self._buf += data
        self._parse(final=False)
        if len(self._buf) > MAX_UNIT_BYTES:
            raise CorruptStream(f"{self.name}: {len(self._buf)} bytes at byte {self.offset} do not form a whole "
                                f"unit (limit {MAX_UNIT_BYTES}); the stream is corrupt or not {self.name}")
        return self._take()

    def finish(self) -> np.ndarray:
        self._parse(final=True)
        if self._buf:
            raise CorruptStream(f"the {self.name} stream ended inside a {self._unit()} ({len(self._buf)} bytes "
                                f"from byte {self.offset} were not decoded); the data was cut; results up to "
                                f"there were sent")
        return self._take()

    def _unit(self) -> str:
        return "page"

    def _parse(self, final: bool) -> None:
        raise NotImplementedError

    def _consume(self, n: int) -> bytes:
        unit = bytes(self._buf[:n])
        del self._buf[:n]
        self.offset += n
        return unit

    def _emit(self, frames: np.ndarray) -> None:
        self._out.append(frames)
        self._out_frames += len(frames)
        if self.rate and self._out_frames > MAX_CALL_SECONDS * self.rate:
            raise CorruptStream(f"{self.name}: one message decoded to more than {MAX_CALL_SECONDS:.0f} s of audio; "
                                "send smaller messages")

    def _take(self) -> np.ndarray:
        if not self._out:
            return np.zeros((0, self.channels or 1), np.float32)
        out = self._out[0] if len(self._out) == 1 else np.concatenate(self._out)
        self._out, self._out_frames = [], 0
        return out

    def _decode(self, codec: av.CodecContext, packet: bytes, where: str) -> None:
        try:
            frames = codec.decode(av.Packet(packet))
        except av.FFmpegError as exc:
            raise CorruptStream(f"{self.name}: the {where} cannot be decoded ({exc.strerror}); the stream is "
                                f"corrupt; results up to there were sent") from None
        for f in frames:
            self._emit(frame_array(f))


def _opus_decoder(head: bytes, name: str) -> tuple[av.CodecContext, int]:
    """A decoder for an OpusHead packet (RFC 7845 5.1); returns it and the channel count."""
    if len(head) < 19 or not head.startswith(b"OpusHead"):
        raise InvalidAudio(f"{name}: the Opus header (OpusHead) is missing or too short; is this Opus audio?")
    channels = head[9]
    if not 1 <= channels <= MAX_CONTAINER_CHANNELS:
        raise InvalidAudio(f"{name}: Opus with {channels} channels is not supported (1-{MAX_CONTAINER_CHANNELS})")
    codec = av.CodecContext.create("opus", "r")
    codec.sample_rate = OPUS_RATE
    codec.extradata = bytes(head)  # the decoder drops the pre-skip it names
    return codec, channels


# -- Ogg -----------------------------------------------------------------------------------------

_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, init 0) through zlib's reflected CRC:
    reverse the bits of every byte, and of the result."""
    crc = zlib.crc32(page.translate(_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{crc:032b}"[::-1], 2)


class OggOpusReader(StreamReader):
    name = "Ogg Opus"

    def __init__(self) -> None:
        super().__init__()
        self._serial: int | None = None
        self._packet = bytearray()
        self._packets = 0
        self._codec: av.CodecContext | None = None
        self._preskip = 0
        self._decoded = 0  # samples out, after the pre-skip
        self._ended = False

    def _parse(self, final: bool) -> None:
        while len(self._buf) >= 27:
            if self._buf[:4] != b"OggS" or self._buf[4] != 0:
                what = "an Ogg page" if self.offset else "Ogg data (it does not start with 'OggS')"
                raise CorruptStream(f"expected {what} at byte {self.offset}; the stream is corrupt, was cut, or is "
                                    f"not {self.name}")
            n_segments = self._buf[26]
            header = 27 + n_segments
            if len(self._buf) < header:
                return
            lacing = self._buf[27:header]
            size = header + sum(lacing)
            if len(self._buf) < size:
                return
            page_at = self.offset
            page = bytearray(self._consume(size))
            flags, granule, serial, sequence, crc = struct.unpack_from("<BqIII", page, 5)
            page[22:26] = b"\0\0\0\0"
            if ogg_crc(bytes(page)) != crc:
                raise CorruptStream(f"{self.name}: the Ogg page at byte {page_at} (page {sequence}) fails its "
                                    "checksum; the stream is corrupt or was cut; results up to there were sent")
            if self._serial is None:
                self._serial = serial
            elif serial != self._serial:
                continue  # another logical stream multiplexed in (e.g. video): not ours
            if self._ended:
                raise InvalidAudio(f"{self.name}: a second (chained) stream starts at byte {page_at}; "
                                   "send one Opus stream per call")
            self._page(bytes(page[header:]), lacing, granule, flags, page_at)

    def _page(self, body: bytes, lacing, granule: int, flags: int, at: int) -> None:
        pos = 0
        for value in lacing:
            self._packet += body[pos:pos + value]
            pos += value
            if value < 255:
                self._on_packet(bytes(self._packet), at)
                self._packet.clear()
        if flags & 0x04:  # end of stream: the granule position trims the padding
            self._ended = True
            end = granule - self._preskip
            if self._codec is not None and 0 <= end < self._decoded:
                self._trim(self._decoded - end)

    def _trim(self, n: int) -> None:
        while n > 0 and self._out:
            last = self._out[-1]
            cut = min(n, len(last))
            self._out[-1] = last[:len(last) - cut]
            n -= cut
            self._decoded -= cut
            self._out_frames -= cut
            if not len(self._out[-1]):
                self._out.pop()

    def _on_packet(self, packet: bytes, at: int) -> None:
        index = self._packets
        self._packets += 1
        if index == 0:
            if packet.startswith(b"\x01vorbis"):
                raise NotStreamable("this Ogg stream is Vorbis; streamed Ogg must be Opus (or upload the file "
                                   "whole to /v1/audio/transcriptions)")
            if packet.startswith(b"\x7fFLAC"):
                raise NotStreamable("this Ogg stream is FLAC; send FLAC in its own format (fLaC) or Opus in Ogg")
            self._codec, self.channels = _opus_decoder(packet, self.name)
            self._preskip = struct.unpack_from("<H", packet, 10)[0]
            self.rate = OPUS_RATE
            self.input_rate = struct.unpack_from("<I", packet, 12)[0]
        elif index == 1:
            if not packet.startswith(b"OpusTags"):
                raise CorruptStream(f"{self.name}: the second packet is not OpusTags; the stream is corrupt")
        else:
            before = self._out_frames
            self._decode(self._codec, packet, f"Opus packet in the page at byte {at}")
            self._decoded += self._out_frames - before


# -- WebM / Matroska -----------------------------------------------------------------------------

_ENTER = {0x18538067, 0x1F43B675, 0xA0}  # Segment, Cluster, BlockGroup
_READ = {0x1A45DFA3, 0x1549A966, 0x1654AE6B, 0xE7, 0xA3, 0xA1, 0x75A2}  # EBML, Info, Tracks, Timecode, blocks
_SKIP = {  # known elements that carry nothing we need
    0x114D9B74, 0x1C53BB6B, 0x1254C367, 0x1043A770, 0x1941A469, 0xEC, 0xBF,  # SeekHead Cues Tags Chapters ...
    0x5854, 0xA7, 0xAB, 0xAF, 0xA2, 0x75A1, 0x9B, 0xFA, 0xFB, 0xA4, 0x8E, 0xC8, 0xCB, 0xCC, 0xCD,
}
_TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE, _CODEC_ID, _CODEC_PRIVATE = 0xAE, 0xD7, 0x83, 0x86, 0x63A2
_AUDIO, _CHANNELS, _RATE = 0xE1, 0x9F, 0xB5
_AUDIO_TRACK = 2


def _vint(buf, pos: int, keep_marker: bool) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``pos``: (value, length); None if incomplete.
    Raises ValueError for an invalid first byte. All-ones sizes (unknown) come back as -1."""
    if pos >= len(buf):
        return None
    first = buf[pos]
    if first == 0:
        raise ValueError("invalid EBML number")
    length = 9 - first.bit_length()
    if pos + length > len(buf):
        return None
    value = int.from_bytes(buf[pos:pos + length], "big")
    if keep_marker:
        return value, length
    value &= (1 << (7 * length)) - 1
    return (-1 if value == (1 << (7 * length)) - 1 else value), length


def _children(data: bytes):
    """(id, payload) of the elements in a master element's payload."""
    pos = 0
    while pos < len(data):
        ident = _vint(data, pos, True)
        size = _vint(data, pos + ident[1], False) if ident else None
        if ident is None or size is None or size[0] < 0:
            raise ValueError("truncated element")
        start = pos + ident[1] + size[1]
        yield ident[0], data[start:start + size[0]]
        pos = start + size[0]


def _uint(data: bytes) -> int:
    return int.from_bytes(data, "big")


class WebmOpusReader(StreamReader):
    name = "WebM Opus"

    def __init__(self) -> None:
        super().__init__()
        self._skip = 0  # bytes of a skipped element still to come
        self._track: int | None = None
        self._codec: av.CodecContext | None = None
        self._scale_ns = 1_000_000
        self._started = False

    def _unit(self) -> str:
        return "WebM element"

    def _parse(self, final: bool) -> None:
        while True:
            if self._skip:
                n = min(self._skip, len(self._buf))
                self._consume(n)
                self._skip -= n
                if self._skip:
                    return
            try:
                ident = _vint(self._buf, 0, True)
                size = _vint(self._buf, ident[1], False) if ident else None
            except ValueError:
                size = ident = (0, 0)
            if ident is None or size is None:
                return
            element, head = ident[0], ident[1] + size[1]
            known = element in _ENTER or element in _READ or element in _SKIP
            if not self._started and element != 0x1A45DFA3:
                raise InvalidAudio(f"the data is not {self.name}: it does not start with an EBML header")
            if not known or (size[0] < 0 and element not in _ENTER):
                raise CorruptStream(f"{self.name}: no WebM element at byte {self.offset}; the stream is corrupt "
                                    f"or was cut; results up to there were sent")
            if element in _ENTER:
                self._consume(head)
            elif element in _SKIP:
                self._consume(head)
                self._skip = size[0]
            else:
                if size[0] > MAX_UNIT_BYTES:
                    raise CorruptStream(f"{self.name}: an element of {size[0]} bytes at byte {self.offset} is "
                                        f"larger than this server reads ({MAX_UNIT_BYTES})")
                if len(self._buf) < head + size[0]:
                    return
                at = self.offset
                payload = self._consume(head + size[0])[head:]
                self._element(element, payload, at)

    def _element(self, element: int, payload: bytes, at: int) -> None:
        if element == 0x1A45DFA3:
            self._started = True
            doc = {k: v for k, v in _children(payload)}.get(0x4282, b"")
            if doc.rstrip(b"\0") not in (b"webm", b"matroska"):
                raise InvalidAudio(f"the EBML document type is {doc!r}; send WebM or Matroska")
        elif element == 0x1549A966:
            info = dict(_children(payload))
            if 0x2AD7B1 in info:
                self._scale_ns = _uint(info[0x2AD7B1])
        elif element == 0x1654AE6B:
            self._tracks(payload)
        elif element in (0xA3, 0xA1):
            self._block(payload, at)
        elif element == 0x75A2 and self._codec is not None:  # DiscardPadding, ns at the end of the last block
            ns = int.from_bytes(payload, "big", signed=True)
            if ns > 0:
                self._trim_end(round(ns * self.rate / 1e9))

    def _tracks(self, payload: bytes) -> None:
        found = []
        for element, entry in _children(payload):
            if element != _TRACK_ENTRY:
                continue
            fields = dict(_children(entry))
            if _uint(fields.get(_TRACK_TYPE, b"")) == _AUDIO_TRACK:
                found.append(fields)
        if not found:
            raise InvalidAudio(f"the {self.name} stream has no audio track; send audio (WebM with an Opus track)")
        fields = found[0]
        codec_id = fields.get(_CODEC_ID, b"").rstrip(b"\0").decode("ascii", "replace")
        if codec_id != "A_OPUS":
            raise NotStreamable(f"the WebM audio track is {codec_id}; streamed WebM must be Opus (A_OPUS), or "
                               f"upload the file whole to /v1/audio/transcriptions")
        self._track = _uint(fields[_TRACK_NUMBER])
        self._codec, self.channels = _opus_decoder(fields.get(_CODEC_PRIVATE, b""), self.name)
        self.rate = OPUS_RATE
        audio = dict(_children(fields.get(_AUDIO, b"")))
        self.input_rate = round(struct.unpack(">d" if len(audio[_RATE]) == 8 else ">f", audio[_RATE])[0]) \
            if _RATE in audio else OPUS_RATE

    def _block(self, payload: bytes, at: int) -> None:
        track = _vint(payload, 0, False)
        if track is None or len(payload) < track[1] + 3:
            raise CorruptStream(f"{self.name}: the block at byte {at} is too short; the stream is corrupt")
        if self._codec is None:
            raise InvalidAudio(f"{self.name}: a block comes before the Tracks element; the stream is not WebM "
                               "as a recorder writes it")
        if track[0] != self._track:
            return
        flags = payload[track[1] + 2]
        if flags & 0x06:
            raise InvalidAudio(f"{self.name}: laced blocks are not supported; send one Opus packet per block")
        self._decode(self._codec, payload[track[1] + 3:], f"Opus block at byte {at}")

    def _trim_end(self, n: int) -> None:
        if self._out and n > 0:
            last = self._out[-1]
            cut = min(n, len(last))
            self._out[-1] = last[:len(last) - cut]
            self._out_frames -= cut


# -- FLAC ----------------------------------------------------------------------------------------

def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def _crc8_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC8 = _crc8_table()


def _flac_header(buf, pos: int) -> tuple[int, int] | None | bool:
    """The frame header at ``pos``: (its frame or sample number, block size); None if the
    buffer ends inside it; False if there is no valid header (no sync, reserved values, CRC-8)."""
    if pos + 4 > len(buf):
        return None
    b0, b1, b2, b3 = buf[pos:pos + 4]
    if b0 != 0xFF or b1 & 0xFE != 0xF8 or b2 >> 4 == 0 or b2 & 0x0F == 0x0F or b3 >> 4 >= 11 or b3 & 1:
        return False
    p = pos + 4
    if p >= len(buf):
        return None
    first = buf[p]
    extra = 0 if first < 0x80 else (8 - (first ^ 0xFF).bit_length()) - 1
    if first >= 0x80 and not 1 <= extra <= 6:
        return False
    if p + 1 + extra > len(buf):
        return None
    number = first & (0x7F >> extra if extra else 0x7F)
    for byte in buf[p + 1:p + 1 + extra]:
        if byte & 0xC0 != 0x80:
            return False
        number = number << 6 | byte & 0x3F
    p += 1 + extra
    code = b2 >> 4
    size_bytes = {6: 1, 7: 2}.get(code, 0)
    rate_bytes = {12: 1, 13: 2, 14: 2}.get(b2 & 0x0F, 0)
    if p + size_bytes + rate_bytes + 1 > len(buf):
        return None
    if size_bytes:
        block = int.from_bytes(buf[p:p + size_bytes], "big") + 1
    else:
        block = 192 if code == 1 else 576 << (code - 2) if code <= 5 else 256 << (code - 8)
    p += size_bytes + rate_bytes
    if _crc8(buf[pos:p]) != buf[p]:
        return False
    return number, block


class FlacReader(StreamReader):
    name = "FLAC"

    def __init__(self) -> None:
        super().__init__()
        self._streaminfo: bytes | None = None
        self._codec: av.CodecContext | None = None
        self._in_metadata = True
        self._expect: int | None = None  # the next frame's number (fixed block size) or first sample
        self._variable = False
        self._scan = 2  # where to look for the next frame's header in _buf
        self.total = 0  # samples in STREAMINFO (0: unknown)

    def _unit(self) -> str:
        return "frame" if not self._in_metadata else "metadata block"

    def _parse(self, final: bool) -> None:
        if self._in_metadata and not self._metadata():
            return
        while True:
            here = _flac_header(self._buf, 0)
            if here is None:
                return
            if here is False:
                raise CorruptStream(f"FLAC: no frame header at byte {self.offset}; the stream is corrupt or was "
                                    f"cut; results up to there were sent")
            self._check_number(here)
            end = self._next_frame(here)
            last = end is None
            if last:
                if not final or not self._buf:
                    return
                end = len(self._buf)  # the last frame runs to the end
            at = self.offset
            try:
                self._decode(self._codec, self._consume(end), f"frame at byte {at}")
            except CorruptStream:
                if not last:
                    raise
                raise CorruptStream(f"the FLAC stream ended inside a frame (the last {end} bytes from byte {at} "
                                    "do not decode); the data was cut; results up to there were sent") from None
            self._expect = here[0] + (here[1] if self._variable else 1)
            self._scan = 2

    def _check_number(self, header: tuple[int, int]) -> None:
        if self._expect is not None and header[0] != self._expect:
            raise CorruptStream(f"FLAC: the frame at byte {self.offset} is not the next one (frames are "
                                f"missing); the stream is corrupt or was cut; results up to there were sent")

    def _next_frame(self, header: tuple[int, int]) -> int | None:
        """Where the frame at the start of _buf ends: at the next valid header numbered next."""
        following = header[0] + (header[1] if self._variable else 1)
        sync = bytes(self._buf[:2])
        while True:
            at = self._buf.find(sync, self._scan)
            if at < 0:
                self._scan = max(2, len(self._buf) - 1)
                return None
            found = _flac_header(self._buf, at)
            if found is None:
                self._scan = at
                return None
            if found is not False and found[0] == following:
                return at
            self._scan = at + 1

    def _metadata(self) -> bool:
        if len(self._buf) < 4:
            return False
        if self.offset == 0 and self._buf[:4] != b"fLaC":
            raise InvalidAudio("the data is not a FLAC stream: it does not start with 'fLaC'")
        pos = 4 if self.offset == 0 else 0
        while pos + 4 <= len(self._buf):
            kind, length = self._buf[pos], int.from_bytes(self._buf[pos + 1:pos + 4], "big")
            if pos + 4 + length > len(self._buf):
                break
            if kind & 0x7F == 0:
                self._streaminfo = bytes(self._buf[pos + 4:pos + 4 + length])
            pos += 4 + length
            if kind & 0x80:
                self._consume(pos)
                self._start()
                return True
        self._consume(pos)  # whole blocks read; keep the rest
        if len(self._buf) > MAX_UNIT_BYTES:
            raise InvalidAudio("FLAC metadata larger than this server reads")
        return False

    def _start(self) -> None:
        info = self._streaminfo
        if info is None or len(info) < 34:
            raise InvalidAudio("FLAC: the STREAMINFO block is missing; the stream is corrupt")
        self._in_metadata = False
        bits = int.from_bytes(info[10:18], "big")
        self.rate = bits >> 44
        self.channels = ((bits >> 41) & 0x7) + 1
        self.total = bits & ((1 << 36) - 1)
        self._variable = int.from_bytes(info[0:2], "big") != int.from_bytes(info[2:4], "big")
        if not self.rate:
            raise InvalidAudio("FLAC: STREAMINFO gives a sample rate of 0")
        self._codec = av.CodecContext.create("flac", "r")
        self._codec.extradata = info
        self._codec.options = {"err_detect": "crccheck"}


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
    container that is read as a whole file (MP3, MP4 / M4A, ...)."""
    if head.startswith(b"OggS"):
        return OggOpusReader
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return WebmOpusReader
    if head.startswith(b"fLaC"):
        return FlacReader
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WavReader
    return None


class WholeFileReader(StreamReader):
    """A container that cannot be decoded as it arrives (MP3, MP4 / M4A, MPEG, ...): the bytes
    are kept (at most ``max_bytes``) and decoded whole at the end of input."""

    name = "audio file"

    def __init__(self, max_bytes: int, max_seconds: float) -> None:
        super().__init__()
        self.max_bytes, self.max_seconds = max_bytes, max_seconds

    def feed(self, data: bytes) -> np.ndarray:
        if len(self._buf) + len(data) > self.max_bytes:
            raise InvalidAudio(f"this audio is in a container that is decoded whole (not Ogg, WebM, FLAC or "
                               f"WAV) and is larger than {self.max_bytes} bytes; send it as Ogg/Opus, WebM/Opus "
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
