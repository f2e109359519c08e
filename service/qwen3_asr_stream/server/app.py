"""Build and run the grpc.aio server around loaded engines.

    server = AsrServer(ServerOptions(port=0), {"Qwen3-ASR-0.6B": engine}, aligner)
    port = await server.start()
    ...
    await server.stop()          # what SIGTERM does: NOT_SERVING, drain, stop

Besides asr.v1.SpeechRecognition the server has standard health checking
(``grpc.health.v1``; NOT_SERVING once shutdown begins) and reflection. It binds
one address with ``so_reuseport`` off (a second server cannot silently share the
port), caps received messages at ``ServerOptions.receive_limit_bytes``, sends
keepalive pings, serves TLS (optionally mutual) and checks a bearer token when
configured, and exposes Prometheus metrics on their own port. With ``http_port`` it
also runs the HTTP server (``server/http.py``: OpenAI REST and Realtime, the captions
page, readiness) on the same event loop, sharing the backend and the drain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from pathlib import Path
from typing import Mapping

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc

from ..engine.aligner import MAX_ALIGN_SECONDS, ForcedAligner
from ..engine.text_layer import StreamingEngine
from ..protocols.grpc_asr.servicer import SpeechRecognitionServicer
from ..protocols.grpc_riva.servicer import add_to_server as add_riva_service
from ..engine.speakers import SpeakerEncoder
from ..session.aligner_worker import AlignerWorker
from ..session.calls import Calls
from ..session.speaker_worker import SpeakerWorker
from ..session.types import Backend
from .http import HttpServer, ssl_context
from .interceptors import BearerTokenAuth, MalformedRequests
from ..session.metrics import Metrics
from .options import ServerOptions, stage_conflicts
from .probes import MetricsHttpServer, Probes

log = logging.getLogger(__name__)

SERVICE_NAME = asr_pb2.DESCRIPTOR.services_by_name["SpeechRecognition"].full_name
KEEPALIVE = [  # values from grpc's keepalive example
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
STOP_GRACE_S = 1.0  # after the grace: how long gRPC waits for calls still running before cancelling them
# Once no call runs: how long RPC handlers and HTTP handlers (a WebSocket's close handshake, an
# upload being read, which are no calls) get to finish before they are cancelled.
FINISH_S = 0.25  # (HTTP handlers: twice, before and after the cancel)


class AsrServer:
    def __init__(self, options: ServerOptions, engines: Mapping[str, StreamingEngine],
                 aligner: ForcedAligner | None = None, speakers: SpeakerEncoder | None = None) -> None:
        if not engines:
            raise ValueError("the server needs at least one ASR engine")
        problems = stage_conflicts(options, {name: e.options.max_utterance_s for name, e in engines.items()},
                                   MAX_ALIGN_SECONDS if aligner is not None else None)
        if problems:
            raise ValueError("server options: " + "; ".join(problems))
        self.options = options
        self.metrics = Metrics()
        worker = None
        if aligner is not None:
            worker = AlignerWorker(aligner, max_batch=options.aligner_max_batch,
                                   on_batch=lambda n, seconds: self.metrics.aligner_seconds.observe(seconds))
        self.backend = Backend(options.session_limits(), dict(engines), worker, self.metrics,
                               SpeakerWorker(speakers) if speakers is not None else None)
        self.calls = Calls(self.backend)
        self.servicer = SpeechRecognitionServicer(self.calls)
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._metrics_http: MetricsHttpServer | None = None
        self.probes = Probes()
        self.http = HttpServer(options, self.calls, self.probes) if options.http_port else None
        self._heartbeat: asyncio.Task | None = None
        self._stopping: asyncio.Task | None = None
        self._watch_metrics()

    def _watch_metrics(self) -> None:
        engines, worker, speakers = self.backend.engines, self.backend.aligner, self.backend.speakers

        def engine_queue():
            for name, engine in engines.items():
                stats = engine.stats()
                yield {"model": name, "state": "open"}, stats.open_utterances
                yield {"model": name, "state": "pending_final"}, stats.pending_finals
                yield {"model": name, "state": "pending_interim"}, stats.pending_interims

        self.metrics.watch("asr_engine_utterances", "Engine utterances: open, and waiting for a final or an interim",
                           engine_queue)
        self.metrics.watch("asr_aligner_queue", "Utterances waiting for the forced aligner",
                           lambda: [({}, worker.queued if worker else 0)])
        self.metrics.watch("asr_speaker_queue_windows", "Speaker-model windows waiting to be embedded",
                           lambda: [({}, speakers.queued_windows if speakers else 0)])

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> int:
        """Start serving; returns the bound port. A port that cannot be bound raises OSError
        naming it, after what was started is stopped again."""
        try:
            return await self._start()
        except BaseException:
            await self._stop_started()
            raise

    async def _stop_started(self) -> None:
        """Undo a start that failed half-way (without it, the half-started gRPC server is torn
        down after the loop closed: "Event loop is closed" noise)."""
        self.probes.ready = False
        if self._server is not None:
            await self._server.stop(0)
            self._server = None
        if self.http is not None:
            await self.http.stop()
        if self._metrics_http is not None:
            self._metrics_http.close()
            self._metrics_http = None
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.backend.aligner is not None:
            self.backend.aligner.close()

    async def _start(self) -> int:
        options = self.options
        for engine in self.backend.engines.values():
            engine.start()
        if self.backend.aligner is not None:
            self.backend.aligner.start()
        if self.backend.speakers is not None:
            self.backend.speakers.start()
        interceptors = [MalformedRequests()]
        if options.auth_token:
            interceptors.append(BearerTokenAuth(options.auth_token,
                                                lambda: self.metrics.rejected.labels("unauthenticated").inc()))
        server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", options.receive_limit_bytes),
            *KEEPALIVE,
        ])
        asr_pb2_grpc.add_SpeechRecognitionServicer_to_server(self.servicer, server)
        riva_service = add_riva_service(self.calls, server, options.riva_any_model)  # nvidia.riva.asr on the same session core
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, riva_service, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME], server)
        address = f"{options.host}:{options.port}"
        self._server = server  # from here on, a failed start stops it
        try:
            if options.tls:
                self.port = server.add_secure_port(address, self._credentials())
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {address} ({exc}; is the port in use?)") from None
        if not self.port:
            raise OSError(f"cannot listen for gRPC on {address} (is the port in use?)")
        await server.start()
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        self._heartbeat = asyncio.get_running_loop().create_task(self.probes.run_heartbeat())
        self.probes.ready = True
        if options.metrics_port:
            try:
                self._metrics_http = MetricsHttpServer(options.host.strip("[]"), options.metrics_port,
                                                       self.metrics.registry, self.probes)
            except OSError as exc:
                raise OSError(f"cannot listen for metrics on {options.host}:{options.metrics_port} "
                              f"({exc.strerror or exc})") from None
            self.metrics_port = self._metrics_http.port
        if self.http is not None:
            tls = ssl_context(options.tls_cert, options.tls_key, options.tls_client_ca) if options.tls else None
            self.http_port = await self.http.start(options.host, options.http_port, tls, handler_timeout_s=FINISH_S)
        log.info("serving %s on %s:%d (%s%s), models %s, word times %s%s", SERVICE_NAME, options.host, self.port,
                 "TLS" if options.tls else "plaintext", ", token" if options.auth_token else "",
                 ", ".join(self.backend.engines), "on" if self.backend.aligner else "off",
                 f", metrics on :{self.metrics_port}" if self.metrics_port else "")
        if self.http_port:
            log.info("serving HTTP (OpenAI /v1/realtime, /v1/audio/transcriptions; captions page /) on %s:%d",
                     options.host, self.http_port)
        return self.port

    def _credentials(self) -> grpc.ServerCredentials:
        options = self.options
        pair = (Path(options.tls_key).read_bytes(), Path(options.tls_cert).read_bytes())
        if options.tls_client_ca is None:
            return grpc.ssl_server_credentials([pair])
        return grpc.ssl_server_credentials([pair], root_certificates=Path(options.tls_client_ca).read_bytes(),
                                           require_client_auth=True)

    async def stop(self, grace_s: float | None = None) -> None:
        """Graceful stop (what SIGTERM does), in this order:

        1. readiness false: gRPC health NOT_SERVING, HTTP ``/readyz`` 503 (``/livez`` stays 200);
        2. the listener closes and every HTTP/2 connection gets GOAWAY, so a proxy or a
           client's balancer opens new streams elsewhere (a new connection is refused,
           which nginx and HAProxy retry on another replica);
        3. every running stream ends after its current utterance, with UNAVAILABLE
           ("reconnect to continue"), forced at half the grace; a stream whose client
           half-closes first ends with OK;
        4. once no call runs (at the latest at ``grace_s``), what is left is cancelled within
           FINISH_S: gRPC connections without calls (a proxy's keep-alive), a WebSocket whose
           client does not answer the close, an upload still being read; the whole stop ends
           by ``grace_s + STOP_GRACE_S``. The metrics and probe server closes last. Safe to
           call twice."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(self.options.grace_s if grace_s is None else grace_s))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace_s: float) -> None:
        if self._server is None:
            return
        log.info("shutting down: draining %d calls (grace %.1f s)", self.calls.active, grace_s)
        self.probes.ready = False
        await self._health.enter_graceful_shutdown()
        # grpc's stop closes the listener and sends GOAWAY at once; running calls go on
        # until they end or its grace is over (then they are cancelled).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s + STOP_GRACE_S

        def finish() -> float:
            return max(0.0, min(FINISH_S, (deadline - loop.time()) / 2))

        closing = asyncio.ensure_future(self._server.stop(grace_s + STOP_GRACE_S))
        await self.calls.drain(grace_s)
        # No call of ours runs now: gRPC would wait out its grace for connections that stay open
        # without calls; a smaller grace in a second stop() ends it sooner.
        await self._server.stop(finish())
        await closing
        if self.http is not None:  # after the drain: its /readyz and /livez answer until then
            await self.http.stop()
        if self.backend.aligner is not None:
            self.backend.aligner.close()
        if self.backend.speakers is not None:
            self.backend.speakers.close()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._metrics_http is not None:
            self._metrics_http.close()
        log.info("stopped")

    async def wait_for_termination(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.wait_for_termination()
        if self._stopping is not None:
            await self._stopping

    def stop_on_signals(self, signals=(signal.SIGTERM, signal.SIGINT)) -> None:
        """SIGTERM/SIGINT start a graceful stop; a second one stops at once (call on the loop's thread)."""
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.add_signal_handler(sig, lambda s=sig: self._on_signal(s))

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._stopping is None:
            log.info("received %s: draining (send it again to stop at once)", name)
            asyncio.ensure_future(self.stop())
        elif self._server is not None:
            log.info("received %s again: stopping now", name)
            asyncio.ensure_future(self._server.stop(0))
