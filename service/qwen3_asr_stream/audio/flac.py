"""A FLAC stream (RFC 9639) as it arrives: metadata, then frames split at the next valid header."""

from __future__ import annotations

import av

from .codecs import CorruptStream, InvalidAudio
from .readers import MAX_UNIT_BYTES, StreamReader, frame_array


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
        self._min_frame = 0  # STREAMINFO's smallest frame, bytes (0: unknown)

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
            early = None
            if last and not final:
                early = self._whole_frame(here)
                if early is None:
                    return
                end, last = len(self._buf), False
            elif last:
                if not self._buf:
                    return
                end = len(self._buf)  # the last frame runs to the end
            at = self.offset
            if early is not None:
                self._consume(end)
                for f in early:
                    self._emit(frame_array(f))
            else:
                self._decode_frame(end, at, last)
            self._expect = here[0] + (here[1] if self._variable else 1)
            self._scan = 2

    def _decode_frame(self, end: int, at: int, last: bool) -> None:
        try:
            self._decode(self._codec, self._consume(end), f"frame at byte {at}")
        except CorruptStream:
            if not last:
                raise
            raise CorruptStream(f"the FLAC stream ended inside a frame (the last {end} bytes from byte {at} "
                                "do not decode); the data was cut; results up to there were sent") from None

    def _whole_frame(self, header: tuple[int, int]) -> list | None:
        """The decoded frames when _buf holds exactly one whole frame before the next header has
        arrived (so it is decoded now, not a frame later); else None. Tried only when no next header
        has begun after its start: a cut frame runs out of bits or fails its
        CRC-16; a whole one gives its block of samples. FLAC frames are independent: a failed try
        leaves the decoder as it was."""
        # A next header begun: a sync code _next_frame did not rule out (it moved _scan past the
        # false ones), or its first byte alone at the end.
        if len(self._buf) < self._min_frame or self._buf.find(bytes(self._buf[:2]), self._scan) >= 0 \
                or self._buf[-1] == 0xFF:
            return None
        try:
            frames = self._codec.decode(av.Packet(bytes(self._buf)))
        except av.FFmpegError:
            return None
        return frames if sum(f.samples for f in frames) == header[1] else None

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
        self._min_frame = int.from_bytes(info[4:7], "big")
        self._variable = int.from_bytes(info[0:2], "big") != int.from_bytes(info[2:4], "big")
        if not self.rate:
            raise InvalidAudio("FLAC: STREAMINFO gives a sample rate of 0")
        self._codec = av.CodecContext.create("flac", "r")
        self._codec.extradata = info
        self._codec.options = {"err_detect": "crccheck+explode"}  # explode: a bad CRC-16 is an error, not a log line
