"""Readiness and liveness over HTTP, next to Prometheus' ``/metrics``.

    probes = Probes()                      # not ready until the server says so
    probes.ready = True                    # serving; False once the drain begins
    probes.beat()                          # from the event loop, at least every LIVE_WITHIN_S
    status, body = probes.answer("/readyz")     # (200, "ready\\n") or (503, "draining\\n")

``/readyz`` is 200 while new calls are welcome and 503 from the moment a drain begins
(the same moment gRPC health turns NOT_SERVING). ``/livez`` is 200 while the event loop
of the server runs (it beats at least every ``BEAT_S``), also while draining: a
draining replica is alive and must not be restarted. ``MetricsHttpServer`` serves both
and ``/metrics``; any other HTTP server can mount ``Probes.answer`` (it takes a path and
returns a status and a plain-text body).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from socketserver import ThreadingMixIn
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

READY_PATH = "/readyz"
LIVE_PATH = "/livez"
BEAT_S = 1.0  # the event loop marks itself alive this often
LIVE_WITHIN_S = 10.0  # /livez fails when the loop has not run for this long (a wedged or blocked loop)

_REASONS = {200: "200 OK", 404: "404 Not Found", 503: "503 Service Unavailable"}


class Probes:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.ready = False
        self._clock = clock
        self._last_beat = clock()

    def beat(self) -> None:
        self._last_beat = self._clock()

    @property
    def live(self) -> bool:
        return self._clock() - self._last_beat < LIVE_WITHIN_S

    def answer(self, path: str) -> tuple[int, str] | None:
        """(status, body) for ``/readyz`` and ``/livez``; None for any other path."""
        if path == READY_PATH:
            return (200, "ready\n") if self.ready else (503, "draining\n")
        if path == LIVE_PATH:
            stale = self._clock() - self._last_beat
            return (200, "alive\n") if stale < LIVE_WITHIN_S else (503, f"event loop stalled for {stale:.0f} s\n")
        return None

    async def run_heartbeat(self) -> None:
        """Beat from the running event loop until cancelled."""
        while True:
            self.beat()
            await asyncio.sleep(BEAT_S)

    def wsgi(self, fallback) -> Callable:
        """A WSGI app answering the probes and handing every other path to ``fallback``."""

        def app(environ, start_response):
            found = self.answer(environ.get("PATH_INFO", ""))
            if found is None:
                return fallback(environ, start_response)
            status, body = found
            start_response(_REASONS[status], [("Content-Type", "text/plain; charset=utf-8"),
                                              ("Cache-Control", "no-store")])
            return [body.encode()]

        return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # probes come every few seconds; no access log
        pass


class MetricsHttpServer:
    """``/metrics``, ``/readyz`` and ``/livez`` on one port, served from a thread."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, probes: Probes) -> None:
        app = probes.wsgi(make_wsgi_app(registry))
        server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
        self._httpd = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
        self.port = self._httpd.server_port
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
