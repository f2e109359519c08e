"""OpenAI's Realtime transcription API over WebSocket, on the session core.

    GET /v1/realtime?intent=transcription   (WebSocket; Authorization: Bearer, or the browser's
                                             subprotocols "realtime", "openai-insecure-api-key.<token>")

Client events: ``session.update`` (GA: ``session.type = "transcription"``, ``audio.input``
{format, transcription, turn_detection}) or the beta ``transcription_session.update``
(``input_audio_format: "pcm16"``, ``input_audio_transcription``, ``turn_detection``);
``input_audio_buffer.append`` / ``.commit`` / ``.clear``. Server events:
``session.created`` / ``session.updated`` (beta: ``transcription_session.updated``),
``input_audio_buffer.speech_started`` / ``.speech_stopped`` / ``.committed`` / ``.cleared``,
``conversation.item.input_audio_transcription.delta`` / ``.completed`` and ``error``.

One item per utterance of the core (``item_id`` from ``speech_started`` to ``completed``).
Interims map onto append-only deltas like this: a delta carries only what the *stable*
text of the utterance grew by (the stable prefix never changes in later interims); when
the final text extends what the deltas spelled, a last delta carries the rest, and the
``completed`` event always carries the whole final transcript, which replaces the deltas
(it differs from them only when the final decode, which sees the whole utterance,
revised the stable text: then ``revised`` is true). Every interim also sends a delta
(maybe empty) with extra fields: ``text`` (the whole current hypothesis),
``stable_text``, ``unstable_text``, ``stability``, ``audio_start_ms``, ``audio_end_ms``,
``language``, ``confidence`` (of the whole current hypothesis) and, with ``include`` naming
``item.input_audio_transcription.logprobs``, OpenAI's ``logprobs`` of the tokens the delta
completes (over an item's deltas each token once, scored by the update that decoded it). With ``turn_detection.eager_pause_ms`` (our extension), a pause that long inside
an utterance sends ``input_audio_buffer.eager_end_of_turn`` (``transcript``: the text so far,
decoded at once) and, if speech goes on in the same item, ``input_audio_buffer.speech_resumed``.
``completed`` adds ``words`` (``{word, start, end, confidence}``, times in s from
the session's first audio), OpenAI's ``logprobs`` (``{token, logprob, bytes}`` of the
transcript's tokens) when ``include`` names ``item.input_audio_transcription.logprobs``,
``confidence`` (0-1, exp of their mean log-probability), with diarization (``include``
``item.input_audio_transcription.speakers`` or a ``...-diarize`` model) ``speaker`` ("A", "B",
... in the order speakers first spoke) and ``segments`` (OpenAI's diarized segments, one per
speaker turn), ``audio_start_ms``, ``audio_end_ms``, ``language``, ``latency_ms``.
OpenAI clients ignore these extra fields.

Everything about admission, limits, idle time, drain, order and finals is the core's
(``calls``); this module only converts events and maps errors through the table
in ``openai_common``; the session shapes are read in ``openai_realtime_config``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
from dataclasses import dataclass, replace

from aiohttp import WSMsgType, web

from ..session.calls import Calls, StreamCall
from ..session.errors import InvalidRequest, Status, is_expected, status_of
from ..session.settings import settings_from
from ..session.types import RecognitionSettings, SpeechEvent, Transcript
from ..text.confidence import tokens_ending_in
from .openai_common import (SUBPROTOCOL, EventIds, OpenAIError, error_body, error_event, error_for, logprobs_of,
                            model_for, speaker_name, speaker_segments, words_of)
from .openai_realtime_config import BadEvent, SessionConfig, as_object, session_object, update_beta, update_ga

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD = 4096  # JSON around the base64 audio of one append
MAX_APPEND_BYTES = 15 * 1024 * 1024  # audio in one append, as OpenAI accepts (the core takes it in pieces)
APPEND_FRAME_BYTES = 4 * -(-MAX_APPEND_BYTES // 3) + MESSAGE_OVERHEAD  # the largest append's frame (base64)
# Frames up to twice that are read and refused with an error event (the session goes on); larger
# ones are closed with 1009 by the WebSocket layer before they are read.
FRAME_LIMIT = 2 * APPEND_FRAME_BYTES
BAD = error_for("INVALID_ARGUMENT")


@dataclass
class _Item:
    item_id: str
    sent: str = ""  # what the deltas spelled so far
    announced: bool = False  # speech_started went out


class Connection:
    """One WebSocket: client events -> the core's session; its results -> server events."""

    def __init__(self, ws: web.WebSocketResponse, call: StreamCall, backend) -> None:
        self.ws, self.call, self.backend = ws, call, backend
        self.session_id = "sess_" + secrets.token_hex(8)
        self.event_id = EventIds()
        self._item_prefix = "item_" + secrets.token_hex(6)
        self.config = SessionConfig()
        self.settings: RecognitionSettings | None = None  # set by the first session.update
        self.session = None  # the core's session, opened by the first audio
        self.items: dict[int, _Item] = {}
        self.cleared: set[int] = set()
        self.previous_item_id: str | None = None
        self._send_lock = asyncio.Lock()
        self._writer: asyncio.Task | None = None

    # -- sending ------------------------------------------------------------------------------

    async def send(self, event: dict) -> None:
        event.setdefault("event_id", self.event_id())
        async with self._send_lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(event, ensure_ascii=False))

    async def send_error(self, message: str, error: OpenAIError = BAD, *, code: str | None = None,
                         param: str | None = None, client_event_id: str | None = None) -> None:
        await self.send(error_event(self.event_id(), message, error, code=code, param=param,
                                    client_event_id=client_event_id))

    def item(self, index: int) -> _Item:
        if index not in self.items:
            self.items[index] = _Item(f"{self._item_prefix}{index:04d}")
        return self.items[index]

    # -- the connection's life -----------------------------------------------------------------

    async def run(self) -> None:
        model = self.backend.default_model
        await self.send({"type": "session.created", "session": session_object(self.session_id, self.config, model,
                                                                               beta=False)})
        idle = self.backend.limits.idle_timeout_s
        try:
            while True:
                if self.session is None:  # the core's watchdog ends the call when idle or draining
                    message = await self.call.before_session(self.ws.receive())
                    if message is None:
                        await self.end(self.call.status)
                        return
                else:
                    message = await self.ws.receive()
                if message.type == WSMsgType.TEXT:
                    await self.on_text(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self.send_error("send events as JSON text frames; audio goes base64 in "
                                          "input_audio_buffer.append", code="invalid_json")
                else:
                    break  # closed by the client, or a protocol error
                if self.session is not None and not self.session.taking_input:
                    break  # the core ended the session; the writer sends the end
                if self.session is not None:
                    await self.session.wait_room(idle)  # back-pressure: the core's watchdog ends a non-reader
        finally:
            if self._writer is not None:
                if self.ws.closed or self.call.ended:
                    self._writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await self._writer

    async def on_text(self, text: str) -> None:
        if len(text) > APPEND_FRAME_BYTES:
            await self.send_error(f"the event has {len(text)} bytes; an input_audio_buffer.append carries at most "
                                  f"{MAX_APPEND_BYTES} bytes of audio ({APPEND_FRAME_BYTES} bytes of JSON): split "
                                  f"the audio over several appends", code="payload_too_large", param="audio")
            return
        try:
            event = json.loads(text)
        except ValueError as exc:
            await self.send_error(f"the message is not JSON: {exc}", code="invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.send_error("each client event is a JSON object with a string 'type'", code="invalid_event",
                                  param="type")
            return
        kind, client_event_id = event["type"], event.get("event_id")
        handler = HANDLERS.get(kind)
        try:
            if handler is None:
                raise BadEvent(f"unknown or unsupported event type {kind!r} in a transcription session; send "
                               f"{', '.join(HANDLERS)}", code="invalid_event_type", param="type")
            await handler(self, event)
        except BadEvent as exc:
            await self.send_error(str(exc), code=exc.code, param=exc.param, client_event_id=client_event_id)
        except InvalidRequest as exc:
            await self.send_error(str(exc), code="invalid_value", client_event_id=client_event_id)

    # -- client events -------------------------------------------------------------------------

    async def on_session_update(self, event: dict) -> None:
        session = as_object(event.get("session"), "session")
        beta = event["type"] == "transcription_session.update" or any(
            key in session for key in ("input_audio_format", "input_audio_transcription"))
        config = (update_beta if beta else update_ga)(self.config, session)
        model = model_for(config.model, self.backend.engines, self.backend.default_model)
        if model is None:
            raise BadEvent(f"unknown model {config.model!r}; this server has {', '.join(self.backend.engines)} "
                           f"(OpenAI model names select {self.backend.default_model})", code="model_not_found",
                           param="session.audio.input.transcription.model")
        if config.words and self.backend.aligner is None:
            config = replace(config, words=False)  # as gRPC: no aligner, no words (session.updated shows it)
        settings = settings_from(self.backend, encoding=config.encoding, sample_rate=config.rate, model=model,
                                 language=config.language, context=config.prompt, word_times=config.words,
                                 endpointing=config.endpointing(self.backend.limits.endpointing),
                                 interim_results=True, update_interval_ms=config.update_interval_ms,
                                 diarization=config.diarize, key_terms=config.key_terms)
        if self.session is not None and replace(settings, key_terms=self.settings.key_terms) == self.settings:
            self.session.set_key_terms(settings.key_terms)  # for the items that start from now on
        elif self.session is not None and settings != self.settings:
            raise BadEvent("the session's audio has started; its configuration cannot change now: open a new "
                           "connection for other settings", code="session_already_started", param="session")
        self.config, self.settings = config, settings
        kind = "transcription_session.updated" if event["type"] == "transcription_session.update" else "session.updated"
        await self.send({"type": kind, "session": session_object(self.session_id, config, model, beta)})

    async def on_append(self, event: dict) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise BadEvent("input_audio_buffer.append needs 'audio': base64 of 16-bit little-endian PCM",
                           param="audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise BadEvent("'audio' is not valid base64", code="invalid_audio", param="audio") from None
        if len(data) > MAX_APPEND_BYTES:
            raise BadEvent(f"'audio' has {len(data)} bytes; one append carries at most {MAX_APPEND_BYTES}: split "
                           f"the audio over several appends", code="payload_too_large", param="audio")
        if self.settings is None:
            raise BadEvent("configure the session first: send session.update (type transcription, audio format and "
                           "turn detection) before input_audio_buffer.append", code="session_not_configured")
        frame = self.settings.audio.frame_bytes
        if len(data) % frame:
            raise BadEvent(f"'audio' has {len(data)} bytes; pcm16 audio has an even number (2 bytes a sample)",
                           code="invalid_audio", param="audio")
        session = self.open()
        # The core takes audio in messages of up to --max-message-bytes (a gRPC message's 20-100 ms);
        # a larger append goes in in such pieces, with the core's back-pressure between them.
        step = max(frame, self.backend.limits.max_message_bytes // frame * frame)
        for start in range(0, len(data), step):
            if start:
                await session.wait_room(self.backend.limits.idle_timeout_s)
            if not session.taking_input:
                return
            session.audio(data[start:start + step])

    async def on_commit(self, event: dict) -> None:
        if self.session is None or not self.session.in_speech:
            raise BadEvent("the input audio buffer has no speech to commit", code="input_audio_buffer_commit_empty")
        self.session.finalize()

    async def on_clear(self, event: dict) -> None:
        if self.session is not None:
            if self.session.in_speech:
                index = self.session.segmenter.utterance_index
                self.cleared.add(index)
                item = self.items.get(index)
                if item is not None and item.announced:  # close the item the client has seen
                    if self.config.vad is not None:
                        await self.send({"type": "input_audio_buffer.speech_stopped", "item_id": item.item_id,
                                         "audio_end_ms": self.session.received_ms})
                    await self.send(self._completed(item, "", cleared=True))
            self.session.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    def open(self):
        if self.session is None:
            self.session = self.call.open(self.settings)
            self._writer = asyncio.get_running_loop().create_task(self.write())
        return self.session

    # -- results -> server events --------------------------------------------------------------

    async def write(self) -> None:
        """The core's results in order as server events, then the end."""
        session = self.session
        while not isinstance(item := await session.next(), Status):
            if item.utterance_index in self.cleared:
                continue
            for event in self.events_of(item):
                await self.send(event)
        await self.end(item)

    def events_of(self, result: Transcript | SpeechEvent) -> list[dict]:
        item = self.item(result.utterance_index)
        vad = self.config.vad is not None
        if isinstance(result, SpeechEvent):
            if result.type == "resumed":  # extension: speech went on after an early end of turn
                return [{"type": "input_audio_buffer.speech_resumed", "item_id": item.item_id,
                         "audio_start_ms": result.offset_ms}]
            if result.type == "start":
                item.announced = vad
                return [{"type": "input_audio_buffer.speech_started", "item_id": item.item_id,
                         "audio_start_ms": result.offset_ms}] if vad else []
            events = [{"type": "input_audio_buffer.speech_stopped", "item_id": item.item_id,
                       "audio_end_ms": result.offset_ms}] if vad else []
            events.append({"type": "input_audio_buffer.committed", "item_id": item.item_id,
                           "previous_item_id": self.previous_item_id})
            self.previous_item_id = item.item_id
            return events
        if not result.is_final:
            delta, start = "", len(item.sent)
            if result.stable_text.startswith(item.sent):
                delta = result.stable_text[len(item.sent):]
                item.sent = result.stable_text
            item.announced = True
            events = [self._delta(item, delta, result, start)]
            if result.eager:  # extension: the speaker paused; the transcript so far
                events.append({"type": "input_audio_buffer.eager_end_of_turn", "item_id": item.item_id,
                               "transcript": result.text, "audio_end_ms": result.end_ms})
            return events
        events = []
        if result.text.startswith(item.sent) and len(result.text) > len(item.sent):
            events.append(self._delta(item, result.text[len(item.sent):], result, len(item.sent)))
            item.sent = result.text
        events.append(self._completed(item, result.text, result=result))
        del self.items[result.utterance_index]
        return events

    def _delta(self, item: _Item, delta: str, t: Transcript, start: int) -> dict:
        """A delta: ``delta`` is ``t.text[start:start + len(delta)]``; with ``logprobs`` included,
        OpenAI's ``logprobs`` of the tokens that end in it (each token once over an item's deltas)."""
        event = {"type": "conversation.item.input_audio_transcription.delta", "item_id": item.item_id,
                 "content_index": 0, "delta": delta, "text": t.text, "stable_text": t.stable_text,
                 "unstable_text": t.unstable_text, "stability": t.stability,
                 "audio_start_ms": t.start_ms, "audio_end_ms": t.end_ms, "language": t.language}
        if t.confidence is not None:
            event["confidence"] = t.confidence
        if self.config.logprobs and delta:
            event["logprobs"] = logprobs_of(tokens_ending_in(t.tokens, start, start + len(delta)))
        return event

    def _completed(self, item: _Item, transcript: str, *, result: Transcript | None = None,
                   cleared: bool = False) -> dict:
        event = {"type": "conversation.item.input_audio_transcription.completed", "item_id": item.item_id,
                 "content_index": 0, "transcript": transcript, "revised": transcript != item.sent,
                 "usage": {"type": "duration", "seconds": 0.0}}
        if cleared:
            event["cleared"] = True
        if result is not None:
            event["usage"]["seconds"] = round((result.end_ms - result.start_ms) / 1000, 3)
            event.update(words=words_of([result]),
                         audio_start_ms=result.start_ms, audio_end_ms=result.end_ms, language=result.language,
                         latency_ms=result.latency_ms, end_reason=result.end_reason.value if result.end_reason else None)
            if result.confidence is not None:
                event["confidence"] = result.confidence
            if result.speaker is not None:
                event["speaker"] = speaker_name(result.speaker)
                event["segments"] = speaker_segments([result])
            if self.config.logprobs:
                event["logprobs"] = logprobs_of(result.tokens)
        return event

    async def end(self, status: Status) -> None:
        """The core ended the session: an error event unless it ended OK, then the close."""
        self.call.end(status)
        error = error_for(status.code.name)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if not status.ok:
                await self.send_error(status.message, error)
            await self.ws.close(code=1000 if status.ok else error.close_code,
                                message=status.message[:120].encode())


HANDLERS = {
    "session.update": Connection.on_session_update,
    "transcription_session.update": Connection.on_session_update,
    "input_audio_buffer.append": Connection.on_append,
    "input_audio_buffer.commit": Connection.on_commit,
    "input_audio_buffer.clear": Connection.on_clear,
}


class RealtimeApi:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.backend = calls.backend

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/realtime", self.realtime)

    def _frame_limit(self) -> int:
        """Largest WebSocket message read: twice the largest append, so that an append over the limit
        gets an error event (``on_text``); larger ones close with 1009."""
        return FRAME_LIMIT

    async def realtime(self, request: web.Request) -> web.StreamResponse:
        intent = request.query.get("intent", "transcription")
        if intent != "transcription":
            return web.json_response(error_body(
                f"intent {intent!r} is not served here; this server transcribes: connect with ?intent=transcription",
                BAD, code="unsupported_intent", param="intent"), status=400)
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), max_msg_size=self._frame_limit(), compress=False)
        if not ws.can_prepare(request).ok:
            return web.json_response(error_body("/v1/realtime is a WebSocket: connect with a WebSocket client",
                                                BAD, code="websocket_required"), status=400)
        try:
            call = self.calls.stream("openai.realtime", request.remote or "")
        except Exception as exc:  # noqa: BLE001 - busy or draining: refused before the upgrade
            status = status_of(exc)
            error = error_for(status.code.name)
            return web.json_response(error_body(status.message, error), status=error.http_status)
        with call:
            await ws.prepare(request)
            connection = Connection(ws, call, self.backend)
            try:
                await connection.run()
            except Exception as exc:  # noqa: BLE001 - a bug: the client gets INTERNAL
                if not is_expected(exc):
                    log.exception("realtime connection failed")
                await connection.end(status_of(exc))
            if not ws.closed:
                await ws.close()
        return ws
