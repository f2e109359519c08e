"""Deepgram's speech-to-text API (the Nova dialect) on the session core.

    GET  /v1/listen?...   WebSocket: binary audio frames; text {"type": "KeepAlive" | "Finalize" |
                          "CloseStream" | "Configure"} (Configure: keyterms for the next utterances). Server: Results, SpeechStarted (vad_events),
                          UtteranceEnd (utterance_end_ms), Metadata (after CloseStream), Error.
    POST /v1/listen?...   pre-recorded: the audio as the body (WAV, FLAC, OGG; or raw with
                          encoding and sample_rate); a JSON {"url"} is refused (we fetch nothing).

One final ``Results`` (``is_final: true``) per utterance of the core; ``speech_final`` when
the utterance ended at a silence (``endpointing``), ``from_finalize`` when a ``Finalize``
ended it. Interims (``interim_results=true``) are the core's interims. Words (with
``start``/``end`` in s from the stream start) come from the shared aligner on finals;
``confidence`` appears only where the engine gives one. ``diarize``: each word's ``speaker``
(0-based) from the core's diarization; ``multichannel``: each channel's own results with
``channel_index`` [i, N] (pre-recorded: one ``results.channels`` entry per channel). Query parameters are checked in
``deepgram_options``; errors map through the one table in ``deepgram_common``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import logging
import uuid
from dataclasses import replace

from aiohttp import WSMsgType, web

from ..audio.input import AudioEncoding
from ..session.errors import InvalidRequest, MessageTooLarge, Status, is_expected, status_of
from ..session.recognize import recognize
from ..session.settings import settings_from
from ..session.types import SpeechEvent, Transcript
from ..session.calls import StreamCall
from ..text.confidence import confidence_of
from .deepgram_common import (KEY_SUBPROTOCOL, TOO_LARGE, alternative_json, channel_index, error_for, error_response,
                              last_word_end_ms, model_info, model_uuid)
from .openai_rest import PCM16_BYTES_PER_S, HttpError, decode_file  # the file reader REST uses
from .deepgram_options import BadParameter, ListenOptions, live_settings, parse_query

log = logging.getLogger(__name__)

FRAME_OVERHEAD = 2  # a WebSocket message may exceed the audio limit this many times before aiohttp closes (1009)


async def serve_connection(request: web.Request, ws: web.WebSocketResponse, call: StreamCall, request_id: str,
                           what: str, connect) -> web.WebSocketResponse:
    """Upgrade an admitted call's request to the WebSocket and run the connection ``connect()``
    makes on it (``/v1/listen`` and ``/v2/listen``); a bug ends it with INTERNAL."""
    ws.headers["dg-request-id"] = request_id
    with call:
        await ws.prepare(request)
        connection = connect()
        try:
            await connection.run()
        except Exception as exc:  # noqa: BLE001 - a bug: the client gets INTERNAL
            if not is_expected(exc):
                log.exception("%s connection failed", what)
            await connection.end(status_of(exc))
        if not ws.closed:
            await ws.close()
    return ws


class ListenConnection:
    """One /v1/listen WebSocket: audio and control messages -> the core; its results -> Deepgram messages."""

    def __init__(self, ws: web.WebSocketResponse, call: StreamCall, backend, options: ListenOptions, settings,
                 request_id: str) -> None:
        self.ws, self.call, self.backend = ws, call, backend
        self.options, self.settings, self.request_id = options, settings, request_id
        self.created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        self.sha256 = hashlib.sha256()
        self.channel = [0, settings.audio.channels]
        self.metadata = {"request_id": request_id, "model_info": model_info(settings.model),
                         "model_uuid": model_uuid(settings.model)}
        self.session = None
        self._lock = asyncio.Lock()
        self._last_word_end_ms: dict[int, int] = {}  # channel -> of its last final with words, until its UtteranceEnd
        self._too_large = False  # the core ends the stream for an audio message over its limit

    async def send(self, message: dict) -> None:
        async with self._lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(message, ensure_ascii=False))

    async def run(self) -> None:
        self.session = session = self.call.open(self.settings)
        writer = asyncio.get_running_loop().create_task(self.write())
        idle = self.backend.limits.idle_timeout_s
        try:
            while session.taking_input:
                if not await session.wait_room(idle):
                    continue  # the core's watchdog ends a client that reads nothing
                message = await self.ws.receive()
                if message.type == WSMsgType.BINARY:
                    if not message.data:  # Deepgram's older way to close a stream: an empty frame
                        session.end_input()
                        continue
                    self.sha256.update(message.data)
                    self._too_large = len(message.data) > session.max_message_bytes
                    session.audio(message.data)
                    await self.utterance_end()
                elif message.type == WSMsgType.TEXT:
                    await self.on_text(message.data)
                else:
                    session.close()  # the client went away without CloseStream
                    break
        finally:
            if self.ws.closed or self.call.ended:
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer

    async def on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message.get("type") if isinstance(message, dict) else None
        except ValueError:
            kind = None
        session = self.session
        if kind == "KeepAlive":
            session.keep_alive()
        elif kind == "Finalize":
            session.finalize()
        elif kind == "CloseStream":
            session.end_input()
        elif kind == "Configure":
            await self.configure(message)
        else:
            await self.send({"type": "Error", "variant": "SchemaError",
                             "description": "a text message must be JSON with type KeepAlive, Finalize, "
                                            "CloseStream or Configure; audio goes in binary messages",
                             "message": text[:200]})

    async def configure(self, message: dict) -> None:
        """``Configure``: ``keyterms`` replace the key terms of the utterances that start from now
        on (Deepgram's rules: a list, empty clears, null keeps); formatting ``features`` are refused."""
        def failure(code: str, description: str) -> dict:
            return {"type": "ConfigureFailure", "request_id": self.request_id, "code": code,
                    "description": description}

        if message.get("features"):
            await self.send(failure("CONFIGURE_INTERNAL_ERROR", "formatting features cannot be changed on this "
                                                                "server (the model writes punctuated text)"))
            return
        terms = message.get("keyterms")
        if terms is None:
            await self.send({"type": "ConfigureSuccess", "request_id": self.request_id})
            return
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            await self.send(failure("CONFIGURE_INTERNAL_ERROR", "keyterms must be a list of strings"))
            return
        try:
            self.session.set_key_terms(terms)
        except InvalidRequest as exc:
            await self.send(failure("CONFIGURE_KEYTERM_LIMIT_EXCEEDED", str(exc)))
            return
        await self.send({"type": "ConfigureSuccess", "request_id": self.request_id,
                         "keyterms": list(self.session.settings.key_terms)})

    async def write(self) -> None:
        """The core's results in order as Deepgram messages, then the end."""
        while not isinstance(item := await self.session.next(), Status):
            if isinstance(item, SpeechEvent):
                if item.type == "start" and self.options.vad_events:
                    await self.send({"type": "SpeechStarted", "channel": self.channel,
                                     "timestamp": item.offset_ms / 1000})
                continue
            await self.send(self.results(item))
            if item.is_final and item.text.strip():
                self._last_word_end_ms[channel_index(item, self.channel[1])[0]] = last_word_end_ms(item)
                await self.utterance_end()
        await self.end(item)

    def results(self, t: Transcript) -> dict:
        reason = t.end_reason.value if t.end_reason is not None else ""
        return {"type": "Results", "channel_index": channel_index(t, self.channel[1]),
                "duration": (t.end_ms - t.start_ms) / 1000,
                "start": t.start_ms / 1000, "is_final": t.is_final,
                "speech_final": t.is_final and reason == "silence", "from_finalize": t.is_final and reason == "forced",
                "channel": {"alternatives": [alternative_json(t)]}, "metadata": self.metadata}

    async def utterance_end(self) -> None:
        """UtteranceEnd once ``utterance_end_ms`` of audio passed after the last final's last word
        with no speech since."""
        limit, session = self.options.utterance_end_ms, self.session
        if limit is None or session.in_speech:
            return
        for channel, last in sorted(self._last_word_end_ms.items()):
            if session.received_ms - last >= limit:
                del self._last_word_end_ms[channel]
                await self.send({"type": "UtteranceEnd", "channel": [channel, self.channel[1]],
                                 "last_word_end": last / 1000})

    async def end(self, status: Status) -> None:
        self.call.end(status)
        with contextlib.suppress(ConnectionError, RuntimeError):
            if status.ok:
                await self.send({"type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
                                 "sha256": self.sha256.hexdigest(), "created": self.created,
                                 "duration": self.session.received_ms / 1000, "channels": self.channel[1],
                                 "models": [self.metadata["model_uuid"]],
                                 "model_info": {self.metadata["model_uuid"]: self.metadata["model_info"]}})
                await self.ws.close(code=1000)
                return
            error = error_for(status.code.name)
            if self._too_large:
                error = TOO_LARGE
            await self.send({"type": "Error", "variant": error.err_code, "description": status.message})
            await self.ws.close(code=error.close_code, message=f"{error.payload} {status.message}"[:120].encode())


def whole_alternative(spoken: list[Transcript]) -> dict:
    """One channel of a pre-recorded answer: its finals' text and words, the confidence over all their tokens."""
    alternative = {"transcript": " ".join(t.text.strip() for t in spoken),
                   "words": [w for t in spoken for w in alternative_json(t)["words"]]}
    confidence = confidence_of([token for t in spoken for token in t.tokens])
    if confidence is not None:
        alternative["confidence"] = confidence
    return alternative


class DeepgramApi:
    def __init__(self, calls) -> None:
        self.calls = calls
        self.backend = calls.backend

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/listen", self.listen)
        app.router.add_post("/v1/listen", self.prerecorded)

    def _options(self, request: web.Request) -> ListenOptions:
        return parse_query({name: request.query.getall(name) for name in request.query.keys()})

    async def listen(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        ws = web.WebSocketResponse(protocols=(KEY_SUBPROTOCOL,), compress=False,
                                   max_msg_size=FRAME_OVERHEAD * self.backend.limits.max_message_bytes)
        try:
            options = self._options(request)
            settings = live_settings(options, self.backend)
            if not ws.can_prepare(request).ok:
                raise BadParameter("connection", "GET /v1/listen is a WebSocket for live audio (POST the audio for "
                                                 "pre-recorded transcription)")
            call = self.calls.stream("deepgram", request.remote or "")
        except Exception as exc:  # noqa: BLE001 - a bad request, busy or draining: refused before the upgrade
            status = status_of(exc)
            return error_response(status.message, error_for(status.code.name), request_id)
        return await serve_connection(
            request, ws, call, request_id, "deepgram",
            lambda: ListenConnection(ws, call, self.backend, options, settings, request_id))

    async def prerecorded(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        backend, limit = self.backend, self.backend.limits.max_recognize_bytes
        try:
            with self.calls.unary("deepgram.prerecorded", request.remote or ""):
                options = self._options(request)
                if request.content_type == "application/json":
                    raise BadParameter("url", "this server fetches no URLs; send the audio bytes as the request "
                                              "body (Content-Type: audio/wav or application/octet-stream)")
                if request.content_length is not None and request.content_length > limit:
                    raise MessageTooLarge(f"the body of {request.content_length} bytes exceeds this server's limit "
                                          f"of {limit}; stream longer audio over the /v1/listen WebSocket")
                body = await request.read()
                if not body:
                    raise BadParameter("body", "the request has no audio; send the audio bytes as the body")
                # A file is decoded to raw samples first, so its channels can be recognized one by one.
                settings = live_settings(replace(options, multichannel=False) if options.encoding is None else options,
                                         backend)
                if options.encoding is None:  # containerized audio: read the file
                    try:
                        pcm, rate, channels = await asyncio.to_thread(decode_file, body, limit / PCM16_BYTES_PER_S)
                    except HttpError as exc:
                        raise BadParameter("body", str(exc)) from None
                    body = pcm
                    settings = settings_from(backend, encoding=AudioEncoding.FLOAT32, sample_rate=rate,
                                             channels=channels, model=settings.model, language=settings.language,
                                             key_terms=settings.key_terms, word_times=settings.word_times,
                                             diarization=options.diarize, separate_channels=options.multichannel)
                recognition = await recognize(body, settings, backend)
        except Exception as exc:  # noqa: BLE001 - every failure is a Deepgram error body (the call logged it)
            status = status_of(exc)
            error = TOO_LARGE if isinstance(exc, MessageTooLarge) else error_for(status.code.name)
            return error_response(status.message, error, request_id)
        n = settings.audio.channels if settings.separate_channels else 1
        channels = [{"alternatives": [whole_alternative([t for t in recognition.results if t.text.strip()
                                                         and channel_index(t, n)[0] == c])]} for c in range(n)]
        uuid_ = model_uuid(settings.model)
        metadata = {"transaction_key": "deprecated", "request_id": request_id,
                    "sha256": hashlib.sha256(await request.read()).hexdigest(),
                    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                    "duration": recognition.duration_ms / 1000, "channels": n, "models": [uuid_],
                    "model_info": {uuid_: model_info(settings.model)}}
        return web.json_response({"metadata": metadata, "results": {"channels": channels}},
                                 headers={"dg-request-id": request_id})
