"""What the streamed containers share: a reader's buffering and bounds, frames as arrays, Opus.

A ``StreamReader`` keeps the bytes of its one unfinished unit (page, block, frame) in
``_buf``, parses whole units in ``_parse`` and decodes their packets with a bare PyAV
``CodecContext``; see ``containers`` for the approach and the bounds.
"""

from __future__ import annotations

import av
import numpy as np

from .codecs import CorruptStream, InvalidAudio


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


def opus_decoder(head: bytes, name: str) -> tuple[av.CodecContext, int]:
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
