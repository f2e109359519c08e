"""Audio in: client bytes in any encoding of ``codecs`` -> float32 mono 16 kHz samples.

One ``AudioDecoder`` per stream. It accepts chunks of any size: bytes that split a
sample, a channel frame, an Ogg page, a WebM block or a FLAC frame are kept and joined
to the next chunk, never dropped. Raw samples (PCM, G.711) are converted here; a
container is split and decoded by its reader (``containers``), which gives the rate and
channel count. Channels are averaged; other rates are resampled with a streaming soxr
resampler, so the output does not depend on how the input was chunked, and offsets
stay in the original audio's time (``frames_in`` counts the decoded input frames).

    decoder = AudioDecoder(AudioFormat(44100, 2, AudioEncoding.LINEAR16))
    samples = decoder.decode(chunk)      # (n,) float32 at 16 kHz, n may be 0
    held = decoder.drain()               # on a forced finalize: the resampler's delay
    tail = decoder.flush()               # at end of stream
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from qwen3_asr_client.results import AudioFormat as ClientAudioFormat

from . import SAMPLE_RATE, g711
from .codecs import AudioEncoding, CorruptStream, InvalidAudio, NotStreamable

__all__ = ["AudioDecoder", "AudioEncoding", "AudioFormat", "CorruptStream", "InvalidAudio"]

TARGET_SAMPLE_RATE = SAMPLE_RATE  # what the VAD and the model consume
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 48_000
MAX_CHANNELS = 8  # mixed down by averaging, or recognized one by one (``separate``)
DEFAULT_MAX_CHUNK_BYTES = 1 << 20  # 1 MiB: ~33 s of 16 kHz 16-bit mono
DEFAULT_MAX_FILE_BYTES = 32 << 20  # a container decoded whole (M4A, MP4, ...) is kept up to this
DEFAULT_MAX_FILE_SECONDS = 3600.0
SEPARATE_NEEDS_RAW = ("separate recognition per channel needs raw audio (LINEAR16, FLOAT32, MULAW or ALAW); "
                      "a compressed or containerized stream is mixed down")
RESAMPLER_QUALITY = "HQ"
G711_TABLES = {AudioEncoding.MULAW: g711.ULAW, AudioEncoding.ALAW: g711.ALAW}


@dataclass(frozen=True)
class AudioFormat(ClientAudioFormat):
    """The client's ``AudioFormat`` (same fields, same order), checked against what the server
    decodes: invalid values raise ValueError on creation; ``encoding`` becomes an AudioEncoding.

    For a container encoding the rate and channels are the container's: ``sample_rate`` 0
    takes them from the bytes, a rate given must agree with the container's (checked by
    the decoder once the header arrives), ``channels`` is not used."""

    def __post_init__(self):
        if self.encoding not in AudioEncoding.__members__.values():
            raise ValueError(
                f"unsupported audio encoding {self.encoding!r}; "
                f"use one of {[e.name for e in AudioEncoding]}"
            )
        object.__setattr__(self, "encoding", AudioEncoding(self.encoding))
        if not _is_int(self.sample_rate):
            raise ValueError(f"sample rate must be an integer number of Hz, got {self.sample_rate!r}")
        if not self.encoding.raw and self.sample_rate == 0:
            return
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(
                f"sample rate {self.sample_rate} Hz is not supported; send "
                f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz (the server resamples to "
                f"{TARGET_SAMPLE_RATE} Hz)" + ("" if self.encoding.raw else ", or 0 to take the rate from the "
                                               "container's header")
            )
        if not self.encoding.raw:
            return
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
        """Duration of raw samples; 0 for a container (known once decoded)."""
        if not self.encoding.raw:
            return 0.0
        return 1000.0 * n_bytes / (self.frame_bytes * self.sample_rate)


class AudioDecoder:
    """Stateful decoder of one stream's audio bytes.

    ``frames_in`` counts the input frames (one sample per channel) received, at the
    input's own rate, and ``samples_out`` the 16 kHz samples returned; ``samples_out / 16``
    is the offset in ms from the start of the stream of the next returned sample.
    ``max_file_bytes`` / ``max_file_seconds`` bound a CONTAINER stream that is decoded
    whole (M4A, MP4, ...). The channels are mixed down by averaging, unless ``separate``
    (raw encodings only): then every output is ``(n, channels)``, each channel resampled
    on its own.
    """

    def __init__(self, fmt: AudioFormat, *, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, max_file_seconds: float = DEFAULT_MAX_FILE_SECONDS,
                 separate: bool = False):
        if separate and not fmt.encoding.raw:
            raise ValueError(SEPARATE_NEEDS_RAW)
        if max_chunk_bytes < fmt.frame_bytes:
            raise ValueError(f"max_chunk_bytes must be at least one frame ({fmt.frame_bytes} bytes)")
        self.format = fmt
        self.out_channels = fmt.channels if separate else 1
        self.max_chunk_bytes = max_chunk_bytes
        self.max_file_bytes, self.max_file_seconds = max_file_bytes, max_file_seconds
        self.frames_in = 0
        self.samples_out = 0
        self._partial = b""  # bytes of an incomplete frame (raw) or the first bytes (CONTAINER), kept
        self._finished = False
        self._reader = None  # a container's reader (containers.StreamReader)
        self._kept: bytearray | None = None  # CONTAINER: the bytes fed until the codec is known
        self.rate: int | None = fmt.sample_rate if fmt.encoding.raw else None
        if not fmt.encoding.raw and fmt.encoding is not AudioEncoding.CONTAINER:
            from .containers import STREAM_READERS

            self._reader = STREAM_READERS[fmt.encoding]()
        self._resampler = None if self.rate in (None, TARGET_SAMPLE_RATE) else self._new_resampler()

    def _new_resampler(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(self.rate, TARGET_SAMPLE_RATE, self.out_channels, dtype="float32",
                                   quality=RESAMPLER_QUALITY)

    @property
    def pending_bytes(self) -> int:
        """Bytes held back because they do not yet form a whole frame."""
        return len(self._partial)

    @property
    def received_ms(self) -> float:
        """Duration of the whole frames received (decoded) so far, ms."""
        return 1000.0 * self.frames_in / self.rate if self.rate else 0.0

    def decode(self, data: bytes) -> np.ndarray:
        """Decode one chunk; returns (n,) float32 mono 16 kHz samples (``(n, channels)`` when
        separate; n may be 0).

        Raises InvalidAudio; CorruptStream when a container's bytes are damaged mid-stream."""
        if self._finished:
            raise RuntimeError("decode() after flush()")
        if len(data) > self.max_chunk_bytes:
            raise InvalidAudio(
                f"audio message of {len(data)} bytes exceeds the limit of "
                f"{self.max_chunk_bytes} bytes; send smaller chunks (20-100 ms is typical)"
            )
        if not self.format.encoding.raw:
            return self._container(data)
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
        error for bytes of an incomplete frame (or page, block) at the end (None when there
        are none).

        What was whole is still decoded: a caller can deliver results for it and then
        report the error.
        """
        if self._finished:
            return self._empty(), None
        error = None
        if not self.format.encoding.raw:
            head = np.zeros(0, np.float32)
            try:
                if self._reader is None and self._partial:
                    head = self._container(b"", final=True)
                if self._reader is not None:
                    head = np.concatenate([head, self._container_frames(self._reader.finish())])
            except InvalidAudio as exc:
                error = exc
            self._finished = True
            return np.concatenate([head, self._emit(np.zeros(0, np.float32), last=True)]), error
        self._finished = True
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

    def _container(self, data: bytes, final: bool = False) -> np.ndarray:
        if self._reader is None:  # CONTAINER: the first bytes say which
            from .containers import WholeFileReader, sniff

            self._partial += bytes(data)
            if len(self._partial) < 12 and not final:
                return np.zeros(0, np.float32)
            reader = sniff(self._partial[:12])
            self._reader = reader() if reader is not None else WholeFileReader(self.max_file_bytes,
                                                                               self.max_file_seconds)
            self._kept = bytearray() if reader is not None else None
            data, self._partial = self._partial, b""
        if self._kept is not None:  # CONTAINER until its codec is known: kept for a whole-file fallback
            self._kept += data
            if len(self._kept) > self.max_file_bytes:
                raise InvalidAudio(f"no audio header in the first {self.max_file_bytes} bytes")
        try:
            frames = self._reader.feed(data) if data or not final else np.zeros((0, 1), np.float32)
        except NotStreamable:
            if self._kept is None:
                raise
            from .containers import WholeFileReader

            self._reader = WholeFileReader(self.max_file_bytes, self.max_file_seconds)
            frames, self._kept = self._reader.feed(bytes(self._kept)), None
        if self._kept is not None and self._reader.rate:
            self._kept = None  # the stream decodes: no fallback needed
        return self._container_frames(frames)

    def _container_frames(self, frames: np.ndarray) -> np.ndarray:
        """(n, channels) frames at the reader's rate -> 16 kHz mono, the rate checked once known."""
        if self.rate is None and self._reader.rate:
            self._set_rate(self._reader)
        if not len(frames):
            return np.zeros(0, np.float32)
        self.frames_in += len(frames)
        samples = frames[:, 0] if frames.shape[1] == 1 else frames.mean(axis=1, dtype=np.float32)
        return self._emit(np.ascontiguousarray(samples, np.float32), last=False)

    def _set_rate(self, reader) -> None:
        declared = self.format.sample_rate
        rates = {reader.rate, getattr(reader, "input_rate", reader.rate)}
        if declared and declared not in rates:
            raise InvalidAudio(
                f"the request says {declared} Hz but the {reader.name} stream is {reader.rate} Hz"
                + (f" (recorded at {reader.input_rate} Hz)" if getattr(reader, "input_rate", 0) else "")
                + "; set the sample rate to the stream's or leave it 0")
        self.rate = reader.rate
        if self.rate != TARGET_SAMPLE_RATE:
            self._resampler = self._new_resampler()

    def _to_mono(self, raw: np.ndarray) -> np.ndarray:
        encoding = self.format.encoding
        if encoding is AudioEncoding.LINEAR16:
            samples = raw.astype(np.float32) * np.float32(1.0 / 32768.0)
        elif encoding in G711_TABLES:
            samples = G711_TABLES[encoding][raw]
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
