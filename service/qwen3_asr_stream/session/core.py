"""One recognition call, protocol-free: audio bytes in, ordered results out.

    AudioDecoder -> Segmenter -> one engine utterance per detected utterance
                                  -> interim results at the call's cadence
                                  -> the final result (+ words from the aligner,
                                     + speakers: windows embedded from the utterance's end,
                                       decided in utterance order; ``diarization``)
                 -> Outbox (call order; unread interims coalesced) -> ``next()``

With ``separate_channels`` every channel of the audio has its own Segmenter, so its own
utterances (numbered in one sequence for the call) and results, tagged with the channel.

A protocol adapter feeds ``audio`` / ``finalize`` / ``clear`` / ``end_input`` from
its client's messages and sends what ``next()`` returns until that is a
``Status``: how the call ended. Every way a call ends goes through ``_close``,
and ``State`` says where the call is:

    OPEN -----------> CLOSING --(results due are sent)--> ENDED
      |  \\                ^
      |   `-> DRAINING ---'   (server shutdown: after the utterance in progress)
      `--------------------------------(abort)----------> ENDED

==================================  =========  ==================================
end                                 graceful   status
==================================  =========  ==================================
half-close (``end_input``)          yes        OK (INVALID_ARGUMENT if the audio
                                               ended inside a sample)
duration limit (``audio``)          yes        OUT_OF_RANGE
no input for the idle timeout       yes        DEADLINE_EXCEEDED
server shutdown (``drain``)         yes        UNAVAILABLE, after the utterance
client reads nothing (``fail``)     no         DEADLINE_EXCEEDED
bad input, engine full (``fail``)   no         INVALID_ARGUMENT / RESOURCE_EXHAUSTED
engine failure on an utterance      no         INTERNAL
client cancels (``close``)          no         CANCELLED
==================================  =========  ==================================

Graceful: the utterance in progress is finished and every result already due is
sent before the status. Everything here runs on the event loop; the engine and
the aligner call back from their threads through ``loop.call_soon_threadsafe`` /
``asyncio.wrap_future``. All offsets are ms from the first audio byte of the call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..audio import SAMPLES_PER_MS
from ..audio.input import AudioDecoder, CorruptStream
from ..audio.vad import EndReason, Segmenter, SpeechAudio, SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted
from ..engine.bias import check_terms
from ..engine.utterance import UpdateResult
from .errors import (OK, Cancelled, InvalidRequest, MessageTooLarge, RecognitionFailed, Status, StreamTooLong,
                     is_expected, status_of)
from .outbox import Outbox, Slot
from .speaker_worker import EMBED_EVERY_WINDOWS
from ..text.alignment import unit_offsets
from .diarization import SpeakerClusters, UtteranceSpeakers, decide
from .types import (Backend, RecognitionSettings, SpeakerTurn, SpeechEvent, Transcript, Word, align_words,
                    with_confidence)

log = logging.getLogger(__name__)


class State(enum.Enum):
    OPEN = "open"  # audio is taken
    DRAINING = "draining"  # the server is shutting down: audio is taken until the utterance in progress ends
    CLOSING = "closing"  # no more input: the results already due are sent, then the end status
    ENDED = "ended"  # the end status is decided and out (or the call was cut: unsent results dropped)


@dataclass(eq=False)
class _Utterance:
    """The session's record of one utterance of its call: the VAD's index, the engine utterance
    that decodes it, audio kept for the aligner, and the outbox slot of its final."""

    index: int
    engine_id: int
    channel: int | None  # 1-based with separate channels, else None
    audio_start: int  # sample of the call where its audio starts (with pre-roll)
    onset: int  # sample of the call where its speech starts (the VAD's onset)
    started_at: float  # monotonic time speech was detected
    keep_audio: bool
    interim: bool
    audio: list[np.ndarray] = field(default_factory=list)  # kept for the aligner
    pushed: int = 0
    pushed_at: dict[int, float] = field(default_factory=dict)  # engine length -> arrival (interims only)
    first_partial: bool = False
    eager_samples: int = 0  # the audio an early end of turn waits for an interim over (0: none waits)
    eager_sent: bool = False  # an early end of turn went out and the speech has not resumed
    ended: SpeechEnded | None = None
    ended_at: float = 0.0
    slot: Slot | None = None
    speaker_parts: list[asyncio.Future] = field(default_factory=list)  # its windows, as the speaker worker embeds them
    windows_asked: int = 0  # windows asked of the speaker worker so far


class Session:
    def __init__(self, settings: RecognitionSettings, backend: Backend, *, max_stream_ms: int | None = None,
                 max_message_bytes: int | None = None, kind: str = "stream") -> None:
        limits = backend.limits
        self.settings = settings
        self.backend = backend
        self.metrics = backend.metrics
        self.engine = backend.engines[settings.model]
        self.max_message_bytes = max_message_bytes or limits.max_message_bytes
        self.max_stream_ms = max_stream_ms or limits.max_stream_seconds * 1000
        # A container decoded whole (M4A, MP4, ... sent as CONTAINER) is bounded like a Recognize request.
        self.decoder = AudioDecoder(settings.audio, max_chunk_bytes=self.max_message_bytes,
                                    max_file_bytes=limits.max_recognize_bytes,
                                    max_file_seconds=min(self.max_stream_ms / 1000, 2**31),
                                    separate=settings.separate_channels)
        channels = settings.audio.channels if settings.separate_channels else 1
        self.segmenters = [Segmenter(settings.endpointing) for _ in range(channels)]
        self.segmenter = self.segmenters[0]  # its clock is every channel's
        self._index_of: dict[tuple[int, int], int] = {}  # (channel, segmenter's index) -> the call's index
        self._channel_of: dict[int, int] = {}  # the call's index -> its channel (1-based), separate channels only
        self._next_index = 0
        self.outbox = Outbox(limits.max_queued_responses)
        self.state = State.OPEN
        self.end_status: Status | None = None
        self.last_input_at = self.started_at = time.monotonic()
        self.max_lead_s = limits.max_lead_s
        self.kind = kind  # the metrics label of its audio: "stream" or "recognize"
        self._loop = asyncio.get_running_loop()
        self._final_delivered = asyncio.Event()
        self._word_times = settings.word_times and backend.aligner is not None
        self._diarize = settings.diarization is not None and backend.speakers is not None
        self._clusters = SpeakerClusters(settings.diarization) if self._diarize else None
        self._speaker_chain: asyncio.Future | None = None  # the last final's speaker decision
        self._utterances: dict[int, _Utterance] = {}
        self._tasks: set[asyncio.Task] = set()
        self._drain_reason: BaseException | None = None
        self.utterances = self.finals = self.interims = 0

    @property
    def taking_input(self) -> bool:
        return self.state in (State.OPEN, State.DRAINING)

    @property
    def in_speech(self) -> bool:
        return any(s.in_speech for s in self.segmenters)

    @property
    def received_ms(self) -> int:
        return int(self.decoder.received_ms)

    @property
    def pending_finals(self) -> int:
        """Utterances that ended and wait for their final."""
        return sum(1 for u in self._utterances.values() if u.ended is not None)

    def idle_for(self) -> float:
        """Seconds since the client's last input (or since we last held it back); 0 while its
        unread results hold the input back."""
        if len(self.outbox) >= self.outbox.max_items:
            return 0.0
        return time.monotonic() - self.last_input_at

    # -- client input ------------------------------------------------------------------

    def audio(self, data: bytes) -> None:
        """One audio message. Bad audio or a full engine ends the call; over the duration
        limit the call ends after the utterance in progress."""
        if not self.taking_input:
            return
        self.last_input_at = time.monotonic()
        if len(data) > self.max_message_bytes:
            self.fail(MessageTooLarge(f"audio message of {len(data)} bytes exceeds the limit of "
                                      f"{self.max_message_bytes}; send 20-100 ms per message"))
            return
        fmt = self.settings.audio
        too_long = StreamTooLong(f"the stream reached the maximum of {self.max_stream_ms // 1000} s of audio; "
                                 f"results up to there were sent; open a new stream to continue")
        if self.decoder.received_ms + fmt.bytes_to_ms(len(data)) > self.max_stream_ms:
            self.stop(too_long)  # raw audio: known before decoding
            return
        before = self.decoder.received_ms
        try:
            samples = self.decoder.decode(data)
        except CorruptStream as exc:  # damaged mid-stream: what came before is recognized, then the error
            self.stop(exc)
            return
        except Exception as exc:  # noqa: BLE001 - bad audio: the call ends
            self.fail(exc)
            return
        over = self.decoder.received_ms - self.max_stream_ms  # a container: known once decoded
        if over > 0:
            samples = samples[:max(0, len(samples) - round(over * SAMPLES_PER_MS))]
        try:
            self.metrics.audio_seconds.labels(self.kind).inc((self.decoder.received_ms - before) / 1000)
            self._push(samples)
        except Exception as exc:  # noqa: BLE001 - the engine full or closed: the call ends
            self.fail(exc)
            return
        if over > 0:
            self.stop(too_long)

    def set_key_terms(self, terms: Sequence[str]) -> None:
        """Key terms for the utterances that start from now on (Deepgram's Configure); raises
        InvalidRequest beyond the limits (``engine.bias.check_terms``, as for a new call)."""
        terms = tuple(dict.fromkeys(t.strip() for t in terms))
        try:
            check_terms(terms, self.settings.term_boost)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        self.settings = dataclasses.replace(self.settings, key_terms=terms)

    def keep_alive(self) -> None:
        """The client is there though it sends no audio now (Deepgram's KeepAlive): not idle."""
        if self.taking_input:
            self.last_input_at = time.monotonic()

    def finalize(self) -> None:
        """End the utterance in progress now (asr.v1 FINALIZE, OpenAI commit, Riva force_eou)."""
        if not self.taking_input:
            return
        self.last_input_at = time.monotonic()
        try:
            self._push(self.decoder.drain())
            self._finish_segments(EndReason.FORCED)
        except Exception as exc:  # noqa: BLE001
            self.fail(exc)

    def clear(self) -> None:
        """Drop the utterance in progress and the audio held, without a final."""
        if not self.taking_input:
            return
        self.last_input_at = time.monotonic()
        self.decoder.drain()
        for segmenter in self.segmenters:
            segmenter.discard()
        self._index_of.clear()  # (the ended utterances' keys are gone already)
        for index, u in list(self._utterances.items()):
            if u.ended is None:
                self.engine.cancel(u.engine_id)
                del self._utterances[index]
        self._check_drain()

    def end_input(self) -> None:
        """Half-close: the last final, then OK (or INVALID_ARGUMENT after it when the audio
        ended inside a sample)."""
        if not self.taking_input:
            return
        tail, error = self.decoder.finish()
        self._finish_input(tail, error)

    def stop(self, reason: BaseException) -> None:
        """End early (limit, idle, shutdown): finish the utterance in progress, send what is
        due, then end the call with the status of ``reason``."""
        if not self.taking_input:
            return
        tail, _ = self.decoder.finish()
        self._finish_input(tail, reason)

    def drain(self, reason: BaseException) -> None:
        """Server shutdown: end the call after the utterance in progress (at once in silence)."""
        if self.state is not State.OPEN:
            return
        self.state = State.DRAINING
        self._drain_reason = reason
        self._check_drain()

    def fail(self, exc: BaseException) -> None:
        """End the call now with the status of ``exc``; nothing more is sent. An exception that
        is not a client-facing condition (a bug) is logged with its traceback."""
        if not is_expected(exc):
            log.error("recognition call failed", exc_info=exc)
        self._close(status_of(exc), graceful=False)

    def close(self) -> None:
        """The call is over (any way): release the engine utterances and pending work."""
        if self.state is not State.ENDED:
            self._close(status_of(Cancelled("cancelled by the client")), graceful=False)
        self._cancel_all()

    # -- results -----------------------------------------------------------------------

    async def next(self) -> Transcript | SpeechEvent | Status:
        """The next result or event in call order, or the Status the call ended with."""
        item = await self.outbox.next()
        if isinstance(item, Status):
            self.state = State.ENDED
        return item

    async def wait_pending_below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` ended utterances wait for their final."""
        while self.pending_finals >= limit and self.state is not State.ENDED:
            self._final_delivered.clear()
            await self._final_delivered.wait()

    def lead_s(self) -> float:
        """How far the audio received is ahead of real time (s since the call began)."""
        return self.decoder.received_ms / 1000 - (time.monotonic() - self.started_at)

    async def wait_room(self, timeout: float) -> bool:
        """Wait until the client has read enough to take more input, and its audio is at most
        ``max_lead_s`` ahead of real time (a client sending a file faster than real time is
        paced there, so it cannot take the engine from real-time calls); False after ``timeout`` s."""
        held = len(self.outbox) >= self.outbox.max_items
        if not await self.outbox.wait_room(timeout):
            return False
        if (early := self.lead_s() - self.max_lead_s) > 0:
            await asyncio.sleep(min(early, timeout))
            held = True
        if held:
            self.last_input_at = time.monotonic()  # held back by us, not idle
        return True

    # -- the one way a call ends --------------------------------------------------------

    def _finish_input(self, tail: np.ndarray, reason: BaseException | None) -> None:
        self.state = State.CLOSING  # no more input: nothing below may end the call a second time
        try:
            self._push(tail)
            self._finish_segments(EndReason.END_OF_STREAM)
        except Exception as exc:  # noqa: BLE001 - e.g. the engine is full or closed
            self.fail(exc)
            return
        self._close(OK if reason is None else status_of(reason), graceful=True)

    def _close(self, status: Status, *, graceful: bool) -> None:
        if self.end_status is not None and (graceful or self.state is State.ENDED):
            return  # the end is decided; only an abort may cut a graceful end short
        self.end_status = status
        if graceful:
            self.state = State.CLOSING
            self.outbox.end(status)
        else:
            self.state = State.ENDED
            self._cancel_all()
            self.outbox.abort(status)
            self._final_delivered.set()

    def _check_drain(self) -> None:
        if self.state is State.DRAINING and not self.in_speech:
            self.stop(self._drain_reason)  # the utterance in progress at shutdown has ended

    # -- segmenter events ---------------------------------------------------------------

    def _push(self, samples: np.ndarray) -> None:
        """Decoded 16 kHz audio to the segmenter(s): ``(n,)``, or ``(n, channels)`` when separate."""
        if samples.ndim == 1:
            self._handle(self.segmenter.push(samples))
            return
        for channel, segmenter in enumerate(self.segmenters):
            self._handle(segmenter.push(np.ascontiguousarray(samples[:, channel])), channel)

    def _finish_segments(self, reason: EndReason) -> None:
        for channel, segmenter in enumerate(self.segmenters):
            self._handle(segmenter.finish(reason), channel)

    def _handle(self, events, channel: int = 0) -> None:
        events = [self._numbered(e, channel) for e in events]
        for event in events:
            if isinstance(event, SpeechAudio):
                self._on_audio(event)
            elif isinstance(event, SpeechStarted):
                self._on_start(event)
            elif isinstance(event, SpeechPaused):
                self._on_pause(event)
            elif isinstance(event, SpeechResumed):
                self._on_resume(event)
            else:
                self._on_end(event)
        self._check_drain()

    def _numbered(self, event, channel: int):
        """An event of a channel's segmenter with the call's utterance index (one sequence for all)."""
        if len(self.segmenters) == 1:
            return event
        key = (channel, event.utterance_index)
        if isinstance(event, SpeechStarted):
            self._index_of[key] = self._next_index
            self._channel_of[self._next_index] = channel + 1
            self._next_index += 1
        index = self._index_of.get(key, -1)  # -1: an utterance cleared before (its events are dropped)
        if isinstance(event, SpeechEnded):
            self._index_of.pop(key, None)
        return replace(event, utterance_index=index)

    def _on_start(self, event: SpeechStarted) -> None:
        index = event.utterance_index
        callback = functools.partial(self._loop.call_soon_threadsafe, self._on_result, index)
        interim = self.settings.interim_results
        engine_id = self.engine.open(self.settings.utterance_options(interim), callback)
        self._utterances[index] = _Utterance(index, engine_id, self._channel_of.pop(index, None),
                                             event.audio_start_sample, event.sample, time.monotonic(),
                                             keep_audio=self._word_times or self._diarize, interim=interim)
        self.utterances += 1
        self.outbox.put(SpeechEvent("start", event.offset_ms, index))

    def _on_audio(self, event: SpeechAudio) -> None:
        u = self._utterances.get(event.utterance_index)
        if u is None:
            return  # cleared
        if u.keep_audio:
            u.audio.append(event.samples)
        if self._diarize:
            self._embed_windows(u, complete_only=True)
        self.engine.push(u.engine_id, event.samples)
        u.pushed += len(event.samples)
        if u.interim:
            u.pushed_at[u.pushed] = time.monotonic()

    def _on_pause(self, event: SpeechPaused) -> None:
        """The speaker paused: an interim over all the audio now, sent as an early end of turn."""
        u = self._utterances.get(event.utterance_index)
        if u is None or u.ended is not None:
            return
        u.eager_samples = max(1, u.pushed)
        self.engine.request_interim(u.engine_id)

    def _on_resume(self, event: SpeechResumed) -> None:
        u = self._utterances.get(event.utterance_index)
        if u is None:
            return
        u.eager_samples = 0
        if u.eager_sent:
            u.eager_sent = False
            self.outbox.put(SpeechEvent("resumed", event.offset_ms, u.index))

    def _on_end(self, event: SpeechEnded) -> None:
        u = self._utterances[event.utterance_index]
        u.ended, u.ended_at = event, time.monotonic()
        self.engine.finish(u.engine_id)
        self.outbox.put(SpeechEvent("end", event.offset_ms, u.index, event.reason))
        u.slot = self.outbox.reserve()
        self.metrics.utterances.labels(event.reason.value).inc()
        if self._diarize:
            self._embed_windows(u, complete_only=False)

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
        if (self._word_times or self._diarize) and result.text.strip():
            task = self._loop.create_task(self._final_with_words(u, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._deliver_final(u, result, ())

    def _on_interim(self, u: _Utterance, result: UpdateResult) -> None:
        eager = 0 < u.eager_samples <= result.audio_samples
        if not (u.interim or eager):
            return  # an interim before the one an early end of turn waits for
        now = time.monotonic()
        # The push that brought the audio the interim covers (it may cover part of a push).
        arrived = min((t for n, t in u.pushed_at.items() if n >= result.audio_samples), default=now)
        for length in [n for n in u.pushed_at if n <= result.audio_samples]:
            del u.pushed_at[length]
        before = self.outbox.coalesced
        transcript = Transcript(
            utterance_index=u.index, is_final=False, text=result.text, stable_text=result.stable_text,
            channel=u.channel, tokens=result.transcript_tokens,
            language=self.settings.result_language(result.language),
            start_ms=u.audio_start // SAMPLES_PER_MS,
            end_ms=(u.audio_start + result.audio_samples) // SAMPLES_PER_MS,
            processed_ms=self.segmenter.received_ms, latency_ms=round(1000 * (now - arrived)), eager=eager,
        )
        if eager:
            u.eager_samples, u.eager_sent = 0, True
            self.outbox.put(transcript)  # not coalesced with later interims
        else:
            self.outbox.put_interim(u.index, transcript)
        self.interims += 1
        self.metrics.results.labels("interim").inc()
        self.metrics.coalesced.inc(self.outbox.coalesced - before)
        self.metrics.engine_compute.labels("interim").observe(result.compute_s)
        if not u.first_partial:
            u.first_partial = True
            self.metrics.first_partial_latency.observe(now - u.started_at)

    def _embed_windows(self, u: _Utterance, complete_only: bool) -> None:
        """Ask the speaker worker for the utterance's windows not asked for yet: while it goes on,
        every EMBED_EVERY_WINDOWS complete ones; at its end, the rest."""
        worker = self.backend.speakers
        assert worker is not None
        samples = sum(len(a) for a in u.audio)
        count = worker.window_count(samples, complete_only)
        if count - u.windows_asked < (EMBED_EVERY_WINDOWS if complete_only else 1):
            return
        u.speaker_parts.append(asyncio.wrap_future(worker.submit(self._audio_of(u), u.windows_asked, complete_only)))
        u.windows_asked = count

    @staticmethod
    def _audio_of(u: _Utterance) -> np.ndarray:
        return np.concatenate(u.audio) if u.audio else np.zeros(0, np.float32)

    async def _final_with_words(self, u: _Utterance, result: UpdateResult) -> None:
        """Words (aligner; also for diarization, which splits at them) and speakers, then the final."""
        assert u.ended is not None
        words: tuple[Word, ...] = ()
        if self.backend.aligner is not None:
            words = await align_words(self.backend.aligner, self._audio_of(u), result.text,
                                      self.settings.result_language(result.language), u.audio_start,
                                      u.ended.audio_end_sample, f"utterance {u.index}")
        speaker, turns = None, ()
        if self._diarize:
            words, speaker, turns = await self._speakers(u, result.text, words)
        self._deliver_final(u, result, words if self._word_times else (), speaker, turns)

    async def _speakers(self, u: _Utterance, text: str, words: tuple[Word, ...]
                        ) -> tuple[tuple[Word, ...], int | None, tuple[SpeakerTurn, ...]]:
        """The speaker stage: decided after every earlier utterance's, with the stream's clusters
        (when the speaker model fails on it, the final goes out without speakers, as without words)."""
        assert u.speaker_parts and self._clusters is not None and u.ended is not None
        previous, mine = self._speaker_chain, self._loop.create_future()
        self._speaker_chain = mine
        try:
            try:
                parts = [await part for part in u.speaker_parts]
                embeddings = np.concatenate([p[0] for p in parts])
                spans = np.concatenate([p[1] for p in parts])
                seconds = sum(p[2] for p in parts)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the final still goes out, without speakers
                log.warning("utterance %d: no speakers (%s: %s)", u.index, type(exc).__name__, exc)
                return words, None, ()
            self.metrics.speaker_seconds.observe(seconds)
            if previous is not None:
                await previous
            base = u.audio_start
            spans_of_words = [(w.start_ms * SAMPLES_PER_MS - base, w.end_ms * SAMPLES_PER_MS - base) for w in words]
            decided = decide(self._clusters, embeddings, spans, spans_of_words, u.ended.audio_end_sample - base,
                             (u.onset - base, u.ended.sample - base))
        finally:
            mine.set_result(None)
        words = tuple(replace(w, speaker=s) for w, s in zip(words, decided.word_speakers))
        return words, decided.speaker, speaker_turns(text, words, decided, base)

    def _deliver_final(self, u: _Utterance, result: UpdateResult, words: tuple[Word, ...],
                       speaker: int | None = None, turns: tuple[SpeakerTurn, ...] = ()) -> None:
        assert u.ended is not None and u.slot is not None
        latency = time.monotonic() - u.ended_at
        self.outbox.fill(u.slot, Transcript(
            utterance_index=u.index, is_final=True, text=result.text, stable_text=result.text,
            channel=u.channel,
            language=self.settings.result_language(result.language),
            start_ms=u.audio_start // SAMPLES_PER_MS, end_ms=u.ended.audio_end_ms,
            processed_ms=self.segmenter.received_ms, latency_ms=round(1000 * latency),
            end_reason=u.ended.reason, words=with_confidence(words, result.transcript_tokens),
            tokens=result.transcript_tokens, speaker=speaker, turns=turns,
        ))
        del self._utterances[u.index]
        self._final_delivered.set()
        self.finals += 1
        self.metrics.results.labels("final").inc()
        self.metrics.final_latency.observe(latency)

    def _cancel_all(self) -> None:
        for u in self._utterances.values():
            self.engine.cancel(u.engine_id)
        self._utterances.clear()
        for task in list(self._tasks):
            task.cancel()


def speaker_turns(text: str, words: tuple[Word, ...], decided: UtteranceSpeakers, base: int
                  ) -> tuple[SpeakerTurn, ...]:
    """The final's turns in ms from the stream start (``base``: the utterance's first sample), each
    with its part of the text: from its first word to the next turn's first word. Without words
    the text cannot be split: the longest turn has it, the others an empty text."""
    offsets = unit_offsets(text, [w.word for w in words])
    firsts = [next((i for i, w in enumerate(words) if w.speaker == speaker and a <= (w.start_ms + w.end_ms) // 2
                    * SAMPLES_PER_MS - base < b), None) for speaker, a, b in decided.turns]
    longest = max(range(len(decided.turns)), key=lambda i: decided.turns[i][2] - decided.turns[i][1])
    out = []
    for i, (speaker, start, end) in enumerate(decided.turns):
        if words:
            begin = 0 if i == 0 or firsts[i] is None else offsets[firsts[i]]
            following = [f for f in firsts[i + 1:] if f is not None]
            part = text[begin: offsets[following[0]] if following else len(text)].strip()
        else:
            part = text if i == longest else ""
        out.append(SpeakerTurn(speaker, (base + start) // SAMPLES_PER_MS, (base + end) // SAMPLES_PER_MS, part))
    return tuple(out)

