"""The HTTP server of the serving process (aiohttp, on the event loop of the grpc.aio server).

    /                          the live captions page (static files shipped in the package)
    /v1/realtime               OpenAI Realtime transcription (WebSocket)     protocols/openai_realtime.py
    /v1/audio/transcriptions   OpenAI REST transcription                     protocols/openai_rest.py
    /v1/listen                 Deepgram live (WebSocket) and pre-recorded (POST) protocols/deepgram.py
    /v2/listen                 Deepgram Flux turns, early end of turn (WebSocket) protocols/deepgram_flux.py
    /v1/models                 the models this server has
    /livez, /readyz            process alive; ready for new calls (503 once the drain begins): server/probes.py
    /metrics                   the server's Prometheus metrics

It shares the backend (engines, aligner, admission, drain, metrics) with the gRPC
server: both protocols' calls count against the same ``max_streams`` and end in the
same drain. The token (``ServerOptions.auth_token``) guards ``/v1/`` (Deepgram's paths take it
as Deepgram's clients send it, ``Authorization: Token``, and refuse in Deepgram's shape); the page,
the probes and the metrics are open, as the gRPC health service is.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..protocols import deepgram_common
from ..protocols.deepgram import DeepgramApi
from ..protocols.deepgram_flux import FluxApi
from ..protocols.openai_common import error_body, error_for, token_ok
from ..protocols.openai_realtime import MESSAGE_OVERHEAD, RealtimeApi
from ..protocols.openai_rest import FORM_FIELDS_BYTES, RestApi
from ..session.calls import Calls
from .options import ServerOptions
from .probes import LIVE_PATH, READY_PATH, Probes

log = logging.getLogger(__name__)

WEB_PACKAGE = "qwen3_asr_stream.protocols.web"
WEB_FILES = {"index.html": "text/html", "app.js": "text/javascript", "capture-worklet.js": "text/javascript",
             "style.css": "text/css"}
DEEPGRAM_PATHS = ("/v1/listen", "/v2/listen")
TOKEN_MESSAGE = ("missing or wrong API key: send 'Authorization: Bearer <token>' (browsers: the WebSocket "
                 "subprotocol 'openai-insecure-api-key.<token>')")


class HttpServer:
    def __init__(self, options: ServerOptions, calls: Calls, probes: Probes) -> None:
        self.options = options
        self.backend = calls.backend
        self.probes = probes
        self.app = web.Application(middlewares=[self._auth],
                                   client_max_size=options.max_recognize_bytes + FORM_FIELDS_BYTES + MESSAGE_OVERHEAD)
        self.app.router.add_get(LIVE_PATH, self.livez)
        self.app.router.add_get(READY_PATH, self.readyz)
        self.app.router.add_get("/metrics", self.metrics)
        self.app.router.add_get("/", self.page)
        self.app.router.add_get("/web/{name}", self.page)
        RealtimeApi(calls).add_routes(self.app)
        RestApi(calls).add_routes(self.app)
        DeepgramApi(calls).add_routes(self.app)
        FluxApi(calls).add_routes(self.app)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                    handler_timeout_s: float = 0.25) -> int:
        """Listen on ``host:port`` (0 = any free port); returns the bound port. ``handler_timeout_s``:
        at ``stop``, how long handlers still running get (aiohttp's default is 60 s)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     shutdown_timeout=handler_timeout_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]"), port, ssl_context=ssl_context, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            raise OSError(f"cannot listen for HTTP on {host}:{port} ({exc.strerror or exc})") from None
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection left (the drain has ended the calls): handlers
        still running (a WebSocket close handshake the client does not answer, an upload being
        read) get ``handler_timeout_s`` of ``start`` to finish, then as long again once cancelled."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middleware and plain endpoints -------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        expected = self.options.auth_token
        if request.path in DEEPGRAM_PATHS:
            if not deepgram_common.key_ok(expected, request.headers):
                self.backend.metrics.rejected.labels("unauthenticated").inc()
                return deepgram_common.error_response(deepgram_common.KEY_MESSAGE,
                                                      deepgram_common.error_for("UNAUTHENTICATED"), str(uuid.uuid4()))
        elif request.path.startswith("/v1/") and not token_ok(expected, request.headers):
            self.backend.metrics.rejected.labels("unauthenticated").inc()
            return web.json_response(error_body(TOKEN_MESSAGE, error_for("UNAUTHENTICATED")), status=401)
        return await handler(request)

    async def livez(self, request: web.Request) -> web.Response:
        status, text = self.probes.answer(LIVE_PATH)
        return web.Response(text=text, status=status, headers={"Cache-Control": "no-store"})

    async def readyz(self, request: web.Request) -> web.Response:
        status, text = self.probes.answer(READY_PATH)
        return web.Response(text=text, status=status, headers={"Cache-Control": "no-store"})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.backend.metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def page(self, request: web.Request) -> web.Response:
        name = request.match_info.get("name", "index.html")
        if name not in WEB_FILES:
            raise web.HTTPNotFound()
        body = resources.files(WEB_PACKAGE).joinpath(name).read_bytes()
        return web.Response(body=body, content_type=WEB_FILES[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})


def ssl_context(cert, key, client_ca=None) -> ssl.SSLContext:
    """The gRPC server's certificate for HTTPS too (and its client CA for mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
