"""WebM / Matroska with an Opus track as it arrives: EBML elements read flat, blocks decoded."""

from __future__ import annotations

import struct

import av

from .codecs import CorruptStream, InvalidAudio, NotStreamable
from .readers import MAX_UNIT_BYTES, OPUS_RATE, StreamReader, opus_decoder


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
        self._codec, self.channels = opus_decoder(fields.get(_CODEC_PRIVATE, b""), self.name)
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
