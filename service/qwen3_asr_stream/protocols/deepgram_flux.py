"""Deepgram's turn-based API (Flux) on the session core: ``GET /v2/listen`` (WebSocket).

One turn per utterance of the core. Server messages: ``Connected``, then ``TurnInfo`` with
``event``:

    StartOfTurn      speech began (the core's speech start)
    Update           the transcript so far (the core's interims)
    EagerEndOfTurn   the speaker paused ``eager_pause_ms`` (only with ``eager_eot_threshold``):
                     the transcript so far, decoded at once; an agent may start its reply
    TurnResumed      speech went on in the same turn after an EagerEndOfTurn
    EndOfTurn        the turn ended at ``eot_timeout_ms`` of silence (or ForceEndTurn /
                     CloseStream): the final transcript, equal to offline decoding

``audio_window_start`` / ``audio_window_end`` are s from the stream start. Client: binary
audio, ``{"type": "ForceEndTurn"}`` (finalize), ``{"type": "CloseStream"}``, ``KeepAlive``.
No ``end_of_turn_confidence`` (the turn ends at a silence, no model scores it).
"""

from __future__ import annotations

import json
import uuid

from aiohttp import web

from ..session.errors import Status, status_of
from ..session.types import SpeechEvent, Transcript
from .deepgram import FRAME_OVERHEAD, ListenConnection, serve_connection
from .deepgram_common import KEY_SUBPROTOCOL, error_for, error_response
from .deepgram_options import BadParameter, live_settings, parse_flux_query


class FluxConnection(ListenConnection):
    """One /v2/listen WebSocket: the core's results as TurnInfo events."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sequence = 0
        self.turns: dict[int, int] = {}  # the core's utterance index -> turn index

    async def send(self, message: dict) -> None:
        message.setdefault("request_id", self.request_id)
        message["sequence_id"] = self.sequence
        self.sequence += 1
        await super().send(message)

    async def run(self) -> None:
        await self.send({"type": "Connected"})
        await super().run()

    async def on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message.get("type") if isinstance(message, dict) else None
        except ValueError:
            kind = None
        if kind == "ForceEndTurn":
            self.session.finalize()
        elif kind in ("KeepAlive", "CloseStream"):
            await super().on_text(text)
        else:
            await self.send({"type": "Warning", "code": "UNPARSABLE_CLIENT_MESSAGE",
                             "description": "a text message must be JSON with type ForceEndTurn, KeepAlive or "
                                            "CloseStream; audio goes in binary messages"})

    def turn(self, utterance: int) -> int:
        return self.turns.setdefault(utterance, len(self.turns))

    def turn_info(self, event: str, utterance: int, start_ms: int, end_ms: int, text: str = "",
                  t: Transcript | None = None) -> dict:
        words = [{"word": w.word, "start": w.start_ms / 1000, "end": w.end_ms / 1000} for w in t.words] if t else []
        return {"type": "TurnInfo", "event": event, "turn_index": self.turn(utterance),
                "audio_window_start": start_ms / 1000, "audio_window_end": end_ms / 1000,
                "transcript": text.strip(), "words": words}

    async def write(self) -> None:
        starts: dict[int, int] = {}
        while not isinstance(item := await self.session.next(), Status):
            index = item.utterance_index
            if isinstance(item, SpeechEvent):
                if item.type == "start":
                    starts[index] = item.offset_ms
                    await self.send(self.turn_info("StartOfTurn", index, item.offset_ms, item.offset_ms))
                elif item.type == "resumed":
                    await self.send(self.turn_info("TurnResumed", index, starts.get(index, 0), item.offset_ms))
                continue
            event = "EndOfTurn" if item.is_final else "EagerEndOfTurn" if item.eager else "Update"
            await self.send(self.turn_info(event, index, item.start_ms, item.end_ms, item.text, item))
            if item.is_final:
                starts.pop(index, None)
        await self.end(item)

    async def end(self, status: Status) -> None:
        self.call.end(status)
        if status.ok:
            await self.ws.close(code=1000)
            return
        error = error_for(status.code.name)
        await self.send({"type": "Error", "code": error.err_code, "description": status.message})
        await self.ws.close(code=error.close_code, message=f"{error.payload} {status.message}"[:120].encode())


class FluxApi:
    def __init__(self, calls) -> None:
        self.calls = calls
        self.backend = calls.backend

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/listen", self.listen)

    async def listen(self, request: web.Request) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        ws = web.WebSocketResponse(protocols=(KEY_SUBPROTOCOL,), compress=False,
                                   max_msg_size=FRAME_OVERHEAD * self.backend.limits.max_message_bytes)
        try:
            options, pause = parse_flux_query({name: request.query.getall(name) for name in request.query.keys()})
            settings = live_settings(options, self.backend, eager_pause_ms=pause)
            if not ws.can_prepare(request).ok:
                raise BadParameter("connection", "GET /v2/listen is a WebSocket for live audio")
            call = self.calls.stream("deepgram.flux", request.remote or "")
        except Exception as exc:  # noqa: BLE001 - a bad request, busy or draining: refused before the upgrade
            status = status_of(exc)
            return error_response(status.message, error_for(status.code.name), request_id)
        return await serve_connection(
            request, ws, call, request_id, "deepgram flux",
            lambda: FluxConnection(ws, call, self.backend, options, settings, request_id))
