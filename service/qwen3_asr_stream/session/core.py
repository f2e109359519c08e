"""One recognition stream: audio bytes -> utterances -> ordered results.

    AudioDecoder -> Segmenter -> one engine utterance per detected utterance
                                  -> interim results at the stream's cadence
                                  -> the final result (+ words from the aligner)
                 -> Outbox (stream order; unread interims coalesced)

The servicer feeds ``audio``/``finalize``/``end_of_stream`` from the client's
requests and sends what ``outbox.next()`` returns. Everything here runs on the
event loop; the engine and the aligner call back from their threads through
``loop.call_soon_threadsafe`` / ``asyncio.wrap_future``.

Audio goes to the engine as it arrives; the engine runs an interim update every
``update_interval_ms`` of new audio when the stream asked for interim results. All
offsets are ms from the first audio byte of the stream.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field

import numpy as np

from ..engine.utterance import UpdateResult
from ..audio.input import AudioDecoder
from .errors import OK, RecognitionFailed, StreamTooLong, status_of
from .outbox import Outbox, Slot
from .types import (SAMPLES_PER_MS, Backend, RecognitionSettings, SpeechEvent, Transcript, Word,
                          align_words)
from ..audio.vad import EndReason, Segmenter, SpeechAudio, SpeechEnded, SpeechStarted


@dataclass(eq=False)
class _Utterance:
    index: int
    engine_id: int
    audio_start: int  # sample of the stream where its audio starts (with pre-roll)
    started_at: float  # monotonic time speech was detected
    keep_audio: bool
    interim: bool
    audio: list[np.ndarray] = field(default_factory=list)  # kept for the aligner
    pushed: int = 0
    pushed_at: dict[int, float] = field(default_factory=dict)  # engine length -> arrival (interims only)
    first_partial: bool = False
    ended: SpeechEnded | None = None
    ended_at: float = 0.0
    slot: Slot | None = None


class StreamSession:
    def __init__(self, settings: RecognitionSettings, backend: Backend) -> None:
        options = backend.options
        self.settings = settings
        self.backend = backend
        self.metrics = backend.metrics
        self.engine = backend.engines[settings.model]
        self.decoder = AudioDecoder(settings.audio, max_chunk_bytes=options.max_message_bytes)
        self.segmenter = Segmenter(settings.endpointing)
        self.outbox = Outbox(options.max_queued_responses)
        self.max_stream_ms = options.max_stream_seconds * 1000
        self._loop = asyncio.get_running_loop()
        self._word_times = settings.word_times and backend.aligner is not None
        self._utterances: dict[int, _Utterance] = {}
        self._tasks: set[asyncio.Task] = set()
        self._input_closed = False
        self._draining = False
        self._drain_reason: BaseException | None = None
        self.utterances = self.finals = self.interims = 0

    @property
    def input_closed(self) -> bool:
        """No more client input is taken: the stream is ending."""
        return self._input_closed or self.outbox.ending

    @property
    def in_speech(self) -> bool:
        return self.segmenter.in_speech

    # -- client input ------------------------------------------------------------------

    def audio(self, data: bytes) -> None:
        """One audio message; raises InvalidAudio, EngineFull. Over the duration limit the stream ends."""
        if self.input_closed:
            return
        fmt = self.settings.audio
        if self.decoder.received_ms + fmt.bytes_to_ms(len(data)) > self.max_stream_ms:
            self.stop(StreamTooLong(
                f"the stream reached the maximum of {self.max_stream_ms // 1000} s of audio; results up to "
                f"there were sent; open a new stream to continue"))
            return
        samples = self.decoder.decode(data)
        self.metrics.audio_seconds.labels("stream").inc(len(data) / (fmt.frame_bytes * fmt.sample_rate))
        self._handle(self.segmenter.push(samples))

    def finalize(self) -> None:
        """Control FINALIZE: end the utterance in progress now."""
        if self.input_closed:
            return
        self._handle(self.segmenter.push(self.decoder.drain()))
        self._handle(self.segmenter.finish(EndReason.FORCED))

    def end_of_stream(self) -> None:
        """Half-close: flush the last utterance; the call ends OK after its final."""
        if self.input_closed:
            return
        self._input_closed = True
        tail = self.decoder.flush()  # InvalidAudio when the stream ended inside a sample
        self._handle(self.segmenter.push(tail))
        self._handle(self.segmenter.finish(EndReason.END_OF_STREAM))
        self.outbox.end(OK)

    def stop(self, reason: BaseException) -> None:
        """End the stream early (limit, idle, shutdown): finish the utterance in progress,
        send what is due, then end the call with the status of ``reason``."""
        if self.input_closed:
            return
        self._input_closed = True
        try:
            self._handle(self.segmenter.push(self.decoder.drain()))
            self._handle(self.segmenter.finish(EndReason.END_OF_STREAM))
        except Exception as exc:  # noqa: BLE001 - e.g. the engine is full or closed
            self.fail(exc)
            return
        self.outbox.end(status_of(reason))

    def drain(self, reason: BaseException) -> None:
        """Server shutdown: end the stream after the utterance in progress (at once in silence)."""
        self._draining = True
        self._drain_reason = reason
        if not self.in_speech:
            self.stop(reason)

    def fail(self, exc: BaseException) -> None:
        """End the call now with the status of ``exc``; nothing more is sent."""
        self._input_closed = True
        self._cancel_all()
        self.outbox.abort(status_of(exc))

    def close(self) -> None:
        """The call is over (any way): release the engine utterances and pending work."""
        self._input_closed = True
        self._cancel_all()

    # -- segmenter events ---------------------------------------------------------------

    def _handle(self, events) -> None:
        for event in events:
            if isinstance(event, SpeechAudio):
                self._on_audio(event)
            elif isinstance(event, SpeechStarted):
                self._on_start(event)
            else:
                self._on_end(event)
        if self._draining and not self.in_speech and not self.input_closed:
            self.stop(self._drain_reason)  # the utterance in progress at shutdown has ended

    def _on_start(self, event: SpeechStarted) -> None:
        index = event.utterance_index
        callback = functools.partial(self._loop.call_soon_threadsafe, self._on_result, index)
        interim = self.settings.interim_results
        engine_id = self.engine.open(self.settings.utterance_options(interim), callback)
        self._utterances[index] = _Utterance(index, engine_id, event.audio_start_sample, time.monotonic(),
                                             keep_audio=self._word_times, interim=interim)
        self.utterances += 1
        self.outbox.put(SpeechEvent(True, event.offset_ms, index))

    def _on_audio(self, event: SpeechAudio) -> None:
        u = self._utterances[event.utterance_index]
        if u.keep_audio:
            u.audio.append(event.samples)
        self.engine.push(u.engine_id, event.samples)
        u.pushed += len(event.samples)
        if u.interim:
            u.pushed_at[u.pushed] = time.monotonic()

    def _on_end(self, event: SpeechEnded) -> None:
        u = self._utterances[event.utterance_index]
        u.ended, u.ended_at = event, time.monotonic()
        self.engine.finish(u.engine_id)
        self.outbox.put(SpeechEvent(False, event.offset_ms, u.index, event.reason))
        u.slot = self.outbox.reserve()
        self.metrics.utterances.labels(event.reason.value).inc()

    # -- results (on the loop, from the engine thread) ----------------------------------

    def _on_result(self, index: int, result: UpdateResult) -> None:
        u = self._utterances.get(index)
        if u is None:
            return  # cancelled
        if result.error:
            # The engine failed on this utterance (logged there): the client must not get an
            # empty text as if it were the transcript.
            self.fail(RecognitionFailed(f"recognition of utterance {u.index} failed"))
            return
        if not result.is_final:
            if u.ended is None:
                self._on_interim(u, result)
            return
        self.metrics.engine_compute.labels("final").observe(result.compute_s)
        if self._word_times and result.text.strip():
            task = self._loop.create_task(self._final_with_words(u, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._deliver_final(u, result, ())

    def _on_interim(self, u: _Utterance, result: UpdateResult) -> None:
        now = time.monotonic()
        arrived = u.pushed_at.get(result.audio_samples, now)
        for length in [n for n in u.pushed_at if n <= result.audio_samples]:
            del u.pushed_at[length]
        before = self.outbox.coalesced
        self.outbox.put_interim(u.index, Transcript(
            utterance_index=u.index, is_final=False, text=result.text, stable_text=result.stable_text,
            language=self.settings.language_of(result.language),
            start_ms=u.audio_start // SAMPLES_PER_MS,
            end_ms=(u.audio_start + result.audio_samples) // SAMPLES_PER_MS,
            processed_ms=self.segmenter.received_ms, latency_ms=round(1000 * (now - arrived)),
        ))
        self.interims += 1
        self.metrics.results.labels("interim").inc()
        self.metrics.coalesced.inc(self.outbox.coalesced - before)
        self.metrics.engine_compute.labels("interim").observe(result.compute_s)
        if not u.first_partial:
            u.first_partial = True
            self.metrics.first_partial_latency.observe(now - u.started_at)

    async def _final_with_words(self, u: _Utterance, result: UpdateResult) -> None:
        assert self.backend.aligner is not None and u.ended is not None
        audio = np.concatenate(u.audio) if u.audio else np.zeros(0, np.float32)
        words = await align_words(self.backend.aligner, audio, result.text, self.settings.language_of(result.language),
                                  u.audio_start, u.ended.audio_end_sample, f"utterance {u.index}")
        self._deliver_final(u, result, words)

    def _deliver_final(self, u: _Utterance, result: UpdateResult, words: tuple[Word, ...]) -> None:
        assert u.ended is not None and u.slot is not None
        latency = time.monotonic() - u.ended_at
        self.outbox.fill(u.slot, Transcript(
            utterance_index=u.index, is_final=True, text=result.text, stable_text=result.text,
            language=self.settings.language_of(result.language),
            start_ms=u.audio_start // SAMPLES_PER_MS, end_ms=u.ended.audio_end_ms,
            processed_ms=self.segmenter.received_ms, latency_ms=round(1000 * latency),
            end_reason=u.ended.reason, words=words,
        ))
        del self._utterances[u.index]
        self.finals += 1
        self.metrics.results.labels("final").inc()
        self.metrics.final_latency.observe(latency)

    def _cancel_all(self) -> None:
        for u in self._utterances.values():
            self.engine.cancel(u.engine_id)
        self._utterances.clear()
        for task in list(self._tasks):
            task.cancel()
