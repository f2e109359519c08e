"""MP3 (MPEG-1/2/2.5 Layer III) as it arrives: frames split by their headers, decoded one by one.

A frame's header gives its length, so each frame is decoded as soon as its bytes are in. An
ID3v2 tag at the start is skipped. The first frame may be a Xing / Info frame (no audio) whose
LAME tag gives the encoder delay and padding: the decoder's output drops the encoder delay plus
the decoder's own 529 samples at the start, and the padding less those 529 at the end (what
FFmpeg's demuxer does), so times are the original's. Bytes that are not a frame header where
one must start end the stream (``CorruptStream``).
"""

from __future__ import annotations

import av
import numpy as np

from .codecs import CorruptStream, NotStreamable
from .readers import StreamReader

DECODER_DELAY = 529  # samples the Layer III decoder's filterbank delays its output (FFmpeg: 528 + 1)
_BITRATES = {1: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
             2: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160]}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


def frame_header(buf, pos: int) -> tuple[int, int, int, int] | None | bool:
    """(frame bytes, samples, rate, channels) of the Layer III header at ``pos``; None if the buffer
    ends inside it; False when there is none."""
    if pos + 4 > len(buf):
        return None
    b0, b1, b2, b3 = buf[pos:pos + 4]
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    rate_index, bitrate_index = (b2 >> 2) & 3, b2 >> 4
    if b0 != 0xFF or b1 & 0xE0 != 0xE0 or version == 1 or layer != 1 or rate_index == 3 \
            or bitrate_index in (0, 15):
        return False
    mpeg1 = version == 3
    rate = _RATES[version][rate_index]
    bitrate = _BITRATES[1 if mpeg1 else 2][bitrate_index] * 1000
    size = (144 if mpeg1 else 72) * bitrate // rate + ((b2 >> 1) & 1)
    return size, 1152 if mpeg1 else 576, rate, 1 if b3 >> 6 == 3 else 2


def lame_delay(frame: bytes) -> tuple[int, int] | None:
    """(encoder delay, padding) from a Xing / Info frame's LAME tag; None if ``frame`` is audio."""
    mpeg1, mono = (frame[1] >> 3) & 3 == 3, frame[3] >> 6 == 3
    at = 4 + (17 if mpeg1 and mono else 32 if mpeg1 else 9 if mono else 17)
    if frame[at:at + 4] not in (b"Xing", b"Info"):
        return None
    flags = int.from_bytes(frame[at + 4:at + 8], "big")
    tag = at + 8 + 4 * bool(flags & 1) + 4 * bool(flags & 2) + 100 * bool(flags & 4) + 4 * bool(flags & 8)
    if len(frame) < tag + 24:
        return 0, 0
    b = frame[tag + 21:tag + 24]
    return (b[0] << 4) | (b[1] >> 4), ((b[1] & 0x0F) << 8) | b[2]


class Mp3Reader(StreamReader):
    name = "MP3"

    def __init__(self) -> None:
        super().__init__()
        self._codec: av.CodecContext | None = None
        self._skip = 0  # samples still to drop at the start
        self._padding = 0  # samples to drop at the end
        self._frames = 0
        self._id3_checked = False
        self._held = np.zeros((0, 1), np.float32)  # the last samples, until we know they are not padding

    def _unit(self) -> str:
        return "frame"

    def _parse(self, final: bool) -> None:
        if not self._id3_checked:
            if len(self._buf) < 10:
                return
            if self._buf[:3] == b"ID3":
                size = 10 + sum((self._buf[6 + i] & 0x7F) << (7 * (3 - i)) for i in range(4))
                size += 10 if self._buf[5] & 0x10 else 0  # a footer
                if len(self._buf) < size:
                    return
                self._consume(size)
            self._id3_checked = True
        while True:
            header = frame_header(self._buf, 0)
            if header is None:
                return
            if header is False:
                if self._frames == 0:
                    raise NotStreamable(f"the data is not MP3: no MPEG Layer III frame at byte {self.offset}")
                if final and len(self._buf) < 128 and self._buf[:3] == b"TAG":  # an ID3v1 tag at the end
                    self._consume(len(self._buf))
                    return
                raise CorruptStream(f"MP3: no frame header at byte {self.offset}; the stream is corrupt or was "
                                    f"cut; results up to there were sent")
            size, _, rate, channels = header
            if len(self._buf) < size:
                return
            at = self.offset
            frame = self._consume(size)
            self._frames += 1
            if self._codec is None:
                self.rate, self.channels = rate, channels
                self._codec = av.CodecContext.create("mp3float", "r")
                self._codec.sample_rate = rate
                delays = lame_delay(frame)
                if delays is not None:  # the Xing / Info frame: no audio
                    self._skip, self._padding = delays[0] + DECODER_DELAY, max(0, delays[1] - DECODER_DELAY)
                    continue
                self._skip = DECODER_DELAY
            self._decode(self._codec, frame, f"frame at byte {at}")

    def _emit(self, frames: np.ndarray) -> None:
        """Drops the start's delay; holds back as many samples as the end's padding (dropped at
        the end of input), so only audio of the recording comes out."""
        if self._skip:
            cut = min(self._skip, len(frames))
            frames, self._skip = frames[cut:], self._skip - cut
        if self._padding:
            frames = np.concatenate([self._held, frames]) if len(self._held) else frames
            keep = min(self._padding, len(frames))
            frames, self._held = frames[:len(frames) - keep], frames[len(frames) - keep:]
        if len(frames):
            super()._emit(frames)
