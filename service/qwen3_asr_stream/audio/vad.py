"""Utterance segmentation of one stream with webrtcvad.

A ``Segmenter`` is fed 16 kHz float32 mono audio in chunks of any size. It cuts
the audio into frames of 10/20/30 ms, classifies each with webrtcvad and returns
events in stream order:

    SpeechStarted   an utterance began (onset, and where its audio starts)
    SpeechAudio     the next piece of the utterance's audio; the first piece
                    starts ``pre_roll_ms`` before the onset
    SpeechEnded     the utterance ended (silence, max_length, forced, end_of_stream):
                    where the speech ended and where its audio ends (after the
                    hangover)
    SpeechPaused    (``eager_pause_ms`` > 0) the speaker paused that long inside an
                    utterance, shorter than its end: an early end of turn may follow
    SpeechResumed   speech went on after a SpeechPaused, in the same utterance

Rules:
  * start: the fraction of voiced frames in the last ``start_window_ms`` reaches
    ``start_threshold``; the onset is the first voiced frame of that window.
  * end: the fraction of unvoiced frames in the last ``stop_window_ms`` reaches
    ``stop_threshold``; the audio ends ``hangover_ms`` after the last voiced frame.
  * an utterance that reaches ``max_utterance_ms`` is cut at the start of its
    quietest 10 ms within the last fifth of that length; the rest starts the next
    utterance at once, so no audio is lost.
  * audio once returned in a SpeechAudio is final: the segmenter holds back the
    audio that may still be cut off (after the hangover, or in the last fifth of
    a maximum-length utterance) until it knows.

Positions are sample indices from the start of the stream (16 samples per ms);
``offset_ms`` properties derive whole ms from them. Audio that is not yet returned
or discarded lives in a fixed-size ring buffer; overflowing it raises instead of
losing audio (it cannot happen with a capacity the options accept).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from . import SAMPLE_RATE  # the model's rate: the VAD sees the decoded audio

SAMPLES_PER_MS = SAMPLE_RATE // 1000
VAD_FRAME_MS = (10, 20, 30)  # the frame lengths webrtcvad accepts
CUT_FRAME_MS = 10  # resolution of the quiet-point search of a max-length cut
CUT_SEARCH_FRACTION = 0.2  # the cut lies in this last fraction of max_utterance_ms
MAX_WINDOW_MS = 10_000
MAX_UTTERANCE_LIMIT_MS = 600_000


class EndReason(str, enum.Enum):
    SILENCE = "silence"
    MAX_LENGTH = "max_length"
    FORCED = "forced"  # the client asked to finalize
    END_OF_STREAM = "end_of_stream"


class BufferOverflow(RuntimeError):
    """The ring buffer is full; raised instead of dropping audio."""


@dataclass(frozen=True)
class EndpointingOptions:
    """How a stream is cut into utterances. Invalid values raise ValueError."""

    frame_ms: int = 30  # webrtcvad frame: 10, 20 or 30 ms
    aggressiveness: int = 2  # webrtcvad mode, 0 (least) to 3 (most eager to call non-speech)
    start_window_ms: int = 240
    start_threshold: float = 0.6  # fraction of voiced frames in the start window
    stop_window_ms: int = 600
    stop_threshold: float = 0.9  # fraction of unvoiced frames in the stop window
    pre_roll_ms: int = 300  # audio kept before the onset
    hangover_ms: int = 300  # audio kept after the last voiced frame
    max_utterance_ms: int = 30_000
    ring_capacity_ms: int | None = None  # None: the least the other options need
    eager_pause_ms: int = 0  # unvoiced ms inside an utterance that make a SpeechPaused (0: off)

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise ValueError(f"endpointing: {message}")

        ints = ("frame_ms", "aggressiveness", "start_window_ms", "stop_window_ms",
                "pre_roll_ms", "hangover_ms", "max_utterance_ms")
        for name in ints:
            value = getattr(self, name)
            need(isinstance(value, (int, np.integer)) and not isinstance(value, bool),
                 f"{name} must be an integer, got {value!r}")
        need(self.frame_ms in VAD_FRAME_MS, f"frame_ms must be one of {VAD_FRAME_MS}, got {self.frame_ms}")
        need(0 <= self.aggressiveness <= 3, f"aggressiveness must be 0-3, got {self.aggressiveness}")
        for name in ("start_window_ms", "stop_window_ms"):
            value = getattr(self, name)
            need(self.frame_ms <= value <= MAX_WINDOW_MS,
                 f"{name} must be {self.frame_ms}-{MAX_WINDOW_MS} ms (at least one frame), got {value}")
        for name in ("start_threshold", "stop_threshold"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and 0 < value <= 1,
                 f"{name} is a fraction of frames and must be in (0, 1], got {value!r}")
        need(0 <= self.pre_roll_ms <= MAX_WINDOW_MS, f"pre_roll_ms must be 0-{MAX_WINDOW_MS}, got {self.pre_roll_ms}")
        need(0 <= self.hangover_ms <= self.stop_window_ms,
             f"hangover_ms must be 0 to stop_window_ms ({self.stop_window_ms}), got {self.hangover_ms}")
        least = max(1000, self.pre_roll_ms + self.start_window_ms + self.frame_ms)
        need(least <= self.max_utterance_ms <= MAX_UTTERANCE_LIMIT_MS,
             f"max_utterance_ms must be {least}-{MAX_UTTERANCE_LIMIT_MS} "
             f"(more than pre_roll_ms + start_window_ms), got {self.max_utterance_ms}")
        need(isinstance(self.eager_pause_ms, (int, np.integer)) and (
            self.eager_pause_ms == 0 or self.frame_ms <= self.eager_pause_ms < self.stop_window_ms),
             f"eager_pause_ms must be 0 (off) or {self.frame_ms} to less than stop_window_ms "
             f"({self.stop_window_ms}), got {self.eager_pause_ms!r}")
        if self.ring_capacity_ms is not None:
            need(self.ring_capacity_ms >= self.required_ring_ms,
                 f"ring_capacity_ms {self.ring_capacity_ms} is too small for these options; "
                 f"use at least {self.required_ring_ms} or leave it unset")

    @property
    def frame_samples(self) -> int:
        return self.frame_ms * SAMPLES_PER_MS

    @property
    def start_frames(self) -> int:
        return math.ceil(self.start_window_ms / self.frame_ms)

    @property
    def start_voiced_frames(self) -> int:
        """Voiced frames in the start window that start an utterance."""
        return max(1, math.ceil(self.start_threshold * self.start_frames - 1e-9))

    @property
    def stop_frames(self) -> int:
        return math.ceil(self.stop_window_ms / self.frame_ms)

    @property
    def stop_unvoiced_frames(self) -> int:
        """Unvoiced frames in the stop window that end an utterance."""
        return max(1, math.ceil(self.stop_threshold * self.stop_frames - 1e-9))

    @property
    def cut_window_samples(self) -> int:
        """Length of the tail of a max-length utterance searched for the cut."""
        step = CUT_FRAME_MS * SAMPLES_PER_MS
        return max(step, int(self.max_utterance_ms * CUT_SEARCH_FRACTION) * SAMPLES_PER_MS // step * step)

    @property
    def required_ring_ms(self) -> int:
        """Most audio the segmenter may need to hold, plus room for two frames."""
        held = max(
            self.start_frames * self.frame_ms + self.pre_roll_ms,  # pre-roll while waiting for a start
            self.stop_frames * self.frame_ms,  # unvoiced tail while waiting for an end
            self.cut_window_samples // SAMPLES_PER_MS + self.frame_ms,  # the tail where a cut may fall
        )
        return held + 2 * self.frame_ms

    @property
    def ring_samples(self) -> int:
        return (self.ring_capacity_ms or self.required_ring_ms) * SAMPLES_PER_MS


def _ms(sample: int) -> int:
    return sample // SAMPLES_PER_MS


@dataclass(frozen=True)
class SpeechStarted:
    utterance_index: int
    sample: int  # the detected onset
    audio_start_sample: int  # first sample of the utterance's audio (onset less pre-roll)

    @property
    def offset_ms(self) -> int:
        return _ms(self.sample)

    @property
    def audio_start_ms(self) -> int:
        return _ms(self.audio_start_sample)


@dataclass(frozen=True, eq=False)
class SpeechAudio:
    utterance_index: int
    start_sample: int
    samples: np.ndarray  # (n,) float32, a copy owned by the event

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.samples)

    @property
    def start_ms(self) -> int:
        return _ms(self.start_sample)


@dataclass(frozen=True)
class SpeechEnded:
    utterance_index: int
    sample: int  # end of the speech: the end of the last voiced frame (or the cut)
    reason: EndReason
    audio_start_sample: int
    audio_end_sample: int  # end of the utterance's audio (exclusive), after the hangover

    @property
    def offset_ms(self) -> int:
        return _ms(self.sample)

    @property
    def audio_end_ms(self) -> int:
        return _ms(self.audio_end_sample)


@dataclass(frozen=True)
class SpeechPaused:
    utterance_index: int
    sample: int  # where the speech paused (the end of its last voiced frame)

    @property
    def offset_ms(self) -> int:
        return _ms(self.sample)


@dataclass(frozen=True)
class SpeechResumed:
    utterance_index: int
    sample: int  # the start of the voiced frame that resumed it

    @property
    def offset_ms(self) -> int:
        return _ms(self.sample)


Event = Union[SpeechStarted, SpeechAudio, SpeechEnded, SpeechPaused, SpeechResumed]


class SampleRing:
    """Fixed-capacity float32 ring addressed by absolute sample positions [start, end)."""

    def __init__(self, capacity: int):
        self._buf = np.zeros(capacity, np.float32)
        self.start = 0
        self.end = 0

    @property
    def capacity(self) -> int:
        return len(self._buf)

    @property
    def free(self) -> int:
        return self.capacity - (self.end - self.start)

    def append(self, samples: np.ndarray) -> None:
        n = len(samples)
        if n > self.free:
            raise BufferOverflow(f"ring buffer of {self.capacity} samples cannot take {n} more ({self.free} free)")
        i = self.end % self.capacity
        first = min(n, self.capacity - i)
        self._buf[i : i + first] = samples[:first]
        self._buf[: n - first] = samples[first:]
        self.end += n

    def read(self, a: int, b: int) -> np.ndarray:
        """Copy of samples [a, b)."""
        assert self.start <= a <= b <= self.end, (a, b, self.start, self.end)
        i, j = a % self.capacity, b % self.capacity
        if b - a == 0:
            return np.zeros(0, np.float32)
        if i < j:
            return self._buf[i:j].copy()
        return np.concatenate([self._buf[i:], self._buf[:j]])

    def discard_before(self, position: int) -> None:
        assert position <= self.end
        self.start = max(self.start, position)


def webrtc_classifier(aggressiveness: int) -> Callable[[np.ndarray], bool]:
    """Frame classifier: (n,) float32 16 kHz frame -> voiced?"""
    try:
        import webrtcvad
    except ImportError as exc:
        raise ImportError(
            "voice activity detection needs webrtcvad: pip install 'qwen3-asr-stream[server]' (webrtcvad-wheels)"
        ) from exc
    vad = webrtcvad.Vad(aggressiveness)

    def process(pcm: bytes, n: int) -> bool:
        return vad.is_speech(pcm, SAMPLE_RATE, n)

    def classify(frame: np.ndarray) -> bool:
        pcm = (np.clip(frame, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        return process(pcm, len(frame))

    return classify


class Segmenter:
    """Endpointing state of one stream; see the module docstring."""

    def __init__(self, options: EndpointingOptions = EndpointingOptions(),
                 classifier: Callable[[np.ndarray], bool] | None = None):
        self.options = options
        self._classify = classifier or webrtc_classifier(options.aggressiveness)
        self._ring = SampleRing(options.ring_samples)
        self._frame = options.frame_samples
        self._pre_roll = options.pre_roll_ms * SAMPLES_PER_MS
        self._hangover = options.hangover_ms * SAMPLES_PER_MS
        self._max = options.max_utterance_ms * SAMPLES_PER_MS
        self._hold_offset = self._max - options.cut_window_samples
        self._start_flags: deque[tuple[int, bool]] = deque(maxlen=options.start_frames)
        self._stop_flags: deque[bool] = deque(maxlen=options.stop_frames)
        self._framed_to = 0  # frames before this position are classified
        self._prev_end = 0  # end of the previous utterance's audio
        self._in_speech = False
        self._index = 0  # the current utterance, or the next one in silence
        self._audio_start = 0  # first sample of the current utterance's audio
        self._emitted_to = 0  # audio before this is returned (in speech)
        self._last_voiced_end = 0
        self._paused = False  # a SpeechPaused went out and no voiced frame came since
        self._eager = options.eager_pause_ms * SAMPLES_PER_MS
        self._closed = False

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def utterance_index(self) -> int:
        """Index of the utterance in progress, or of the next one."""
        return self._index

    @property
    def samples_received(self) -> int:
        return self._ring.end

    @property
    def received_ms(self) -> int:
        return _ms(self._ring.end)

    def push(self, samples: np.ndarray) -> list[Event]:
        """Feed (n,) float32 16 kHz mono audio of any length; returns the new events."""
        if self._closed:
            raise RuntimeError("push() after finish(END_OF_STREAM)")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"expected mono samples of shape (n,), got {samples.shape}")
        events: list[Event] = []
        pos = 0
        while pos < len(samples):
            take = min(self._ring.free, len(samples) - pos)
            if take == 0:
                raise BufferOverflow("ring buffer full although every frame was processed")
            self._ring.append(samples[pos : pos + take])
            pos += take
            self._process_frames(events)
        return events

    def finish(self, reason: EndReason = EndReason.FORCED) -> list[Event]:
        """End the utterance in progress now (FORCED) or at the end of the stream.

        Returns its last audio and SpeechEnded, or nothing outside an utterance.
        After END_OF_STREAM the segmenter takes no more audio.
        """
        reason = EndReason(reason)
        if reason not in (EndReason.FORCED, EndReason.END_OF_STREAM):
            raise ValueError(f"finish() takes FORCED or END_OF_STREAM, not {reason.name}")
        if self._closed:
            return []
        events: list[Event] = []
        if self._in_speech:
            # The received audio includes a partial frame that was never classified.
            end = min(self._last_voiced_end + self._hangover, self._ring.end)
            self._end(max(end, self._emitted_to), reason, events)
        if reason is EndReason.END_OF_STREAM:
            self._closed = True
        return events

    def discard(self) -> None:
        """Drop the utterance in progress (no SpeechEnded follows) and the audio held.

        Offsets go on from the audio received; the next utterance gets the next
        index and no pre-roll from before this point.
        """
        if self._in_speech:
            self._index += 1
            self._in_speech = False
        self._start_flags.clear()
        self._stop_flags.clear()
        self._prev_end = self._emitted_to = self._framed_to
        self._ring.discard_before(self._framed_to)

    # -- internals ---------------------------------------------------------

    def _process_frames(self, events: list[Event]) -> None:
        opts = self.options
        while self._ring.end - self._framed_to >= self._frame:
            start = self._framed_to
            voiced = self._classify(self._ring.read(start, start + self._frame))
            self._framed_to += self._frame
            turn = None  # a SpeechPaused / SpeechResumed of this frame
            if not self._in_speech:
                self._start_flags.append((start, voiced))
                if sum(v for _, v in self._start_flags) >= opts.start_voiced_frames:
                    self._start(events)
            else:
                self._stop_flags.append(voiced)
                if voiced:
                    self._last_voiced_end = self._framed_to
                    if self._paused:
                        self._paused, turn = False, SpeechResumed(self._index, start)
                elif self._eager and not self._paused and self._framed_to - self._last_voiced_end >= self._eager:
                    self._paused, turn = True, SpeechPaused(self._index, self._last_voiced_end)
                if (len(self._stop_flags) == opts.stop_frames
                        and self._stop_flags.count(False) >= opts.stop_unvoiced_frames):
                    end = min(self._last_voiced_end + self._hangover, self._framed_to)
                    self._end(max(end, self._emitted_to), EndReason.SILENCE, events)
                elif self._framed_to - self._audio_start >= self._max:
                    self._cut(events)
                    turn = None
            if self._in_speech:
                limit = min(self._last_voiced_end + self._hangover,
                            self._audio_start + self._hold_offset, self._framed_to)
                self._emit(limit, events)
                if turn is not None and turn.utterance_index == self._index:
                    events.append(turn)  # after the audio it is about
            self._discard()

    def _start(self, events: list[Event]) -> None:
        flags = list(self._start_flags)
        voiced_starts = [s for s, v in flags if v]
        self._audio_start = max(self._prev_end, voiced_starts[0] - self._pre_roll)
        onset = max(voiced_starts[0], self._audio_start)
        self._in_speech = True
        self._paused = False
        self._emitted_to = self._audio_start
        self._last_voiced_end = voiced_starts[-1] + self._frame
        self._stop_flags.clear()
        self._stop_flags.extend(v for s, v in flags if s >= voiced_starts[0])
        self._start_flags.clear()
        events.append(SpeechStarted(self._index, onset, self._audio_start))

    def _end(self, end: int, reason: EndReason, events: list[Event], *, continues: bool = False) -> None:
        """End the utterance's audio at `end`; `continues`: the speech goes on in the next."""
        self._emit(end, events)
        speech_end = end if continues else max(min(self._last_voiced_end, end), self._audio_start)
        events.append(SpeechEnded(self._index, speech_end, reason, self._audio_start, end))
        self._index += 1
        self._prev_end = end
        if continues:
            self._audio_start = self._emitted_to = end
            events.append(SpeechStarted(self._index, end, end))
        else:
            self._in_speech = False
            self._stop_flags.clear()
            self._start_flags.clear()

    def _cut(self, events: list[Event]) -> None:
        """Cut at the quietest 10 ms in the last fifth of the maximum length."""
        step = CUT_FRAME_MS * SAMPLES_PER_MS
        first = self._audio_start + self._hold_offset
        limit = self._audio_start + self._max
        n = (limit - first) // step
        tail = self._ring.read(first, first + n * step).reshape(n, step)
        cut = first + int(np.argmin(np.einsum("ij,ij->i", tail, tail))) * step
        if self._last_voiced_end <= cut:  # no speech after the cut: just end here
            end = max(min(self._last_voiced_end + self._hangover, limit), self._emitted_to)
            self._end(end, EndReason.MAX_LENGTH, events)
        else:
            self._end(cut, EndReason.MAX_LENGTH, events, continues=True)

    def _emit(self, upto: int, events: list[Event]) -> None:
        if upto > self._emitted_to:
            events.append(SpeechAudio(self._index, self._emitted_to, self._ring.read(self._emitted_to, upto)))
            self._emitted_to = upto

    def _discard(self) -> None:
        if self._in_speech:
            keep = self._emitted_to
        else:  # what a future start may need as pre-roll
            window = self.options.start_frames * self._frame
            keep = max(self._prev_end, self._framed_to - window - self._pre_roll)
        self._ring.discard_before(min(keep, self._framed_to))
