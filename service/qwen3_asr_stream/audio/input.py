"""Audio in: raw client bytes -> float32 mono 16 kHz samples.

One ``AudioDecoder`` per stream. It accepts chunks of any size: bytes that split a
sample or a channel frame are kept and joined to the next chunk, never dropped.
Two channels are averaged; other rates are resampled with a streaming soxr
resampler, so the output does not depend on how the input was chunked.

    decoder = AudioDecoder(AudioFormat(44100, 2, AudioEncoding.LINEAR16))
    samples = decoder.decode(chunk)      # (n,) float32 at 16 kHz, n may be 0
    held = decoder.drain()               # on a forced finalize: the resampler's delay
    tail = decoder.flush()               # at end of stream
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import soxr

from qwen3_asr_client.results import AudioFormat as ClientAudioFormat

from . import SAMPLE_RATE

TARGET_SAMPLE_RATE = SAMPLE_RATE  # what the VAD and the model consume
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000
MAX_CHANNELS = 8  # mixed down by averaging, or recognized one by one (``separate``)
DEFAULT_MAX_CHUNK_BYTES = 1 << 20  # 1 MiB: ~33 s of 16 kHz 16-bit mono
RESAMPLER_QUALITY = "HQ"


class InvalidAudio(ValueError):
    """The client sent audio that cannot be decoded (maps to INVALID_ARGUMENT)."""


class AudioEncoding(str, enum.Enum):
    """The encodings the server decodes; equal to the client's strings ("LINEAR16", "FLOAT32")."""

    LINEAR16 = "LINEAR16"  # signed 16-bit little-endian PCM
    FLOAT32 = "FLOAT32"  # IEEE 754 32-bit little-endian, nominally in [-1, 1]

    @property
    def sample_bytes(self) -> int:
        return 2 if self is AudioEncoding.LINEAR16 else 4

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<i2") if self is AudioEncoding.LINEAR16 else np.dtype("<f4")


@dataclass(frozen=True)
class AudioFormat(ClientAudioFormat):
    """The client's ``AudioFormat`` (same fields, same order), checked against what the server
    decodes: invalid values raise ValueError on creation; ``encoding`` becomes an AudioEncoding."""

    def __post_init__(self):
        if self.encoding not in AudioEncoding.__members__.values():
            raise ValueError(
                f"unsupported audio encoding {self.encoding!r}; "
                f"use one of {[e.name for e in AudioEncoding]}"
            )
        object.__setattr__(self, "encoding", AudioEncoding(self.encoding))
        if not _is_int(self.sample_rate):
            raise ValueError(f"sample rate must be an integer number of Hz, got {self.sample_rate!r}")
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(
                f"sample rate {self.sample_rate} Hz is not supported; send "
                f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz (the server resamples to "
                f"{TARGET_SAMPLE_RATE} Hz)"
            )
        if not _is_int(self.channels) or not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(
                f"{self.channels!r} audio channels are not supported; send 1 to {MAX_CHANNELS} "
                f"(mixed down by the server, or recognized separately when asked)"
            )

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel."""
        return self.encoding.sample_bytes * self.channels

    def bytes_to_ms(self, n_bytes: int) -> float:
        return 1000.0 * n_bytes / (self.frame_bytes * self.sample_rate)


class AudioDecoder:
    """Stateful decoder of one stream's audio bytes.

    ``frames_in`` counts the input frames (one sample per channel) received and
    ``samples_out`` the 16 kHz samples returned; ``samples_out / 16`` is the
    offset in ms from the start of the stream of the next returned sample.
    The channels are mixed down by averaging, unless ``separate``: then every
    output is ``(n, channels)``, each channel resampled on its own.
    """

    def __init__(self, fmt: AudioFormat, *, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
                 separate: bool = False):
        if max_chunk_bytes < fmt.frame_bytes:
            raise ValueError(f"max_chunk_bytes must be at least one frame ({fmt.frame_bytes} bytes)")
        self.format = fmt
        self.out_channels = fmt.channels if separate else 1
        self.max_chunk_bytes = max_chunk_bytes
        self.frames_in = 0
        self.samples_out = 0
        self._partial = b""  # bytes of an incomplete frame, carried to the next chunk
        self._finished = False
        self._resampler = None if fmt.sample_rate == TARGET_SAMPLE_RATE else self._new_resampler()

    def _new_resampler(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(
            self.format.sample_rate, TARGET_SAMPLE_RATE, self.out_channels, dtype="float32",
            quality=RESAMPLER_QUALITY
        )

    @property
    def pending_bytes(self) -> int:
        """Bytes held back because they do not yet form a whole frame."""
        return len(self._partial)

    @property
    def received_ms(self) -> float:
        """Duration of the whole frames received so far, ms."""
        return 1000.0 * self.frames_in / self.format.sample_rate

    def decode(self, data: bytes) -> np.ndarray:
        """Decode one chunk; returns (n,) float32 mono 16 kHz samples (``(n, channels)`` when
        separate; n may be 0)."""
        if self._finished:
            raise RuntimeError("decode() after flush()")
        if len(data) > self.max_chunk_bytes:
            raise InvalidAudio(
                f"audio message of {len(data)} bytes exceeds the limit of "
                f"{self.max_chunk_bytes} bytes; send smaller chunks (20-100 ms is typical)"
            )
        frame_bytes = self.format.frame_bytes
        buf = self._partial + bytes(data) if self._partial else bytes(data)
        whole = len(buf) - len(buf) % frame_bytes
        raw = np.frombuffer(buf[:whole], dtype=self.format.encoding.dtype)
        samples = self._to_mono(raw)  # raises before any state changes
        self._partial = buf[whole:]
        self.frames_in += whole // frame_bytes
        return self._emit(samples, last=False)

    def drain(self) -> np.ndarray:
        """Output everything received so far, for a forced finalize mid-stream.

        The resampler holds back up to ~70 ms (8 kHz input) of delayed output; this
        flushes it and starts a fresh resampler, so decoding goes on (with a filter
        restart at this point, and at most a sample of rounding in the offsets).
        Bytes of an incomplete frame stay pending.
        """
        if self._finished:
            raise RuntimeError("drain() after flush()")
        if self._resampler is None:
            return self._empty()
        tail = self._emit(self._empty(), last=True)
        self._resampler = self._new_resampler()
        return tail

    def flush(self) -> np.ndarray:
        """End of stream: the resampler's remaining output.

        Raises InvalidAudio when the stream ended inside a frame (the leftover
        bytes are not silently dropped).
        """
        tail, error = self.finish()
        if error is not None:
            raise error
        return tail

    def finish(self) -> tuple[np.ndarray, InvalidAudio | None]:
        """End of stream: the remaining output of the whole frames received, and the
        error for bytes of an incomplete frame at the end (None when there are none).

        What was whole is still decoded: a caller can deliver results for it and then
        report the error.
        """
        if self._finished:
            return self._empty(), None
        self._finished = True
        error = None
        if self._partial:
            error = InvalidAudio(
                f"the audio ended with {len(self._partial)} bytes that do not form a whole "
                f"frame of {self.format.frame_bytes} bytes ({self.format.encoding.name}, "
                f"{self.format.channels} channel(s)); results up to the last whole frame were sent"
            )
            self._partial = b""
        return self._emit(self._empty(), last=True), error

    def _empty(self) -> np.ndarray:
        return np.zeros(0 if self.out_channels == 1 else (0, self.out_channels), np.float32)

    def _to_mono(self, raw: np.ndarray) -> np.ndarray:
        if self.format.encoding is AudioEncoding.LINEAR16:
            samples = raw.astype(np.float32) * np.float32(1.0 / 32768.0)
        else:
            samples = raw.astype(np.float32)
            finite = np.isfinite(samples)
            if not finite.all():
                bad = int(np.argmin(finite)) // self.format.channels
                at_ms = 1000.0 * (self.frames_in + bad) / self.format.sample_rate
                raise InvalidAudio(
                    f"FLOAT32 audio contains NaN or infinite samples (first at "
                    f"{at_ms:.1f} ms from stream start); send finite values in [-1, 1]"
                )
        if self.out_channels > 1:
            return samples.reshape(-1, self.out_channels)
        if self.format.channels > 1:
            samples = samples.reshape(-1, self.format.channels).mean(axis=1, dtype=np.float32)
        return samples

    def _emit(self, samples: np.ndarray, *, last: bool) -> np.ndarray:
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=last)
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        self.samples_out += len(samples)
        return samples


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def samples_to_ms(samples: int) -> int:
    """Whole ms of a 16 kHz sample count (offsets from stream start)."""
    return samples * 1000 // TARGET_SAMPLE_RATE
