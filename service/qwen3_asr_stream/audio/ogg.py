"""Ogg Opus (RFC 3533, RFC 7845) as it arrives: pages checked by their CRC, packets decoded."""

from __future__ import annotations

import struct
import zlib

import av

from .codecs import CorruptStream, InvalidAudio, NotStreamable
from .readers import OPUS_RATE, StreamReader, opus_decoder


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
            self._codec, self.channels = opus_decoder(packet, self.name)
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
