"""The asr.v1.SpeechRecognition servicer: validate, convert protobuf <-> domain, call sessions.

Admission (``max_streams`` calls at once, none while draining), the per-stream
reader task (idle timeout, message size, order of requests) and one log line per
stream live here; recognition itself is in ``session`` and ``recognize``, and the
status codes in ``errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time

import grpc

from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc

from ...transcript import SUPPORTED_LANGUAGES
from ...audio.input import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from .convert import LANGUAGE_CODES, endpointing_proto, response_proto, result_proto, settings_of
from ...session.errors import (IdleTimeout, InvalidRequest, MessageTooLarge, ServerBusy, ShuttingDown, Status,
                     is_expected, status_of)
from ...session.types import Backend, RecognitionSettings
from ...session.recognize import recognize
from ...session.core import StreamSession

log = logging.getLogger(__name__)

ERROR_DRAIN_S = 1.0  # how long a failed stream keeps reading the client's requests before its status
# Statuses about what the client sent: it is likely still sending (see _drain).
DRAINED_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE)

SHUTDOWN_MESSAGE = "the server is shutting down; reconnect to continue"


class SpeechRecognitionServicer(asr_pb2_grpc.SpeechRecognitionServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.options = backend.options
        self.metrics = backend.metrics
        self.sessions: set[StreamSession] = set()
        self.active_calls = 0
        self.draining = False
        self._idle = asyncio.Event()  # set while no call is running
        self._idle.set()
        self._ids = itertools.count(1)

    # -- admission and shutdown --------------------------------------------------------------

    def _admit(self) -> None:
        if self.draining:
            self.metrics.rejected.labels("shutting_down").inc()
            raise ShuttingDown(SHUTDOWN_MESSAGE)
        if self.active_calls >= self.options.max_streams:
            self.metrics.rejected.labels("busy").inc()
            raise ServerBusy(f"the server is serving its limit of {self.options.max_streams} streams; retry later")
        self.active_calls += 1
        self._idle.clear()

    def _release(self) -> None:
        self.active_calls -= 1
        if self.active_calls == 0:
            self._idle.set()

    @contextlib.contextmanager
    def _admitted(self):
        self._admit()
        try:
            yield
        finally:
            self._release()

    async def drain(self, grace_s: float) -> None:
        """Refuse new calls; let every stream finish its utterance (forced after half the grace);
        returns when no call runs or the grace is over."""
        self.draining = True
        for session in list(self.sessions):
            session.drain(ShuttingDown(SHUTDOWN_MESSAGE))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s / 2)
            return
        for session in list(self.sessions):
            session.stop(ShuttingDown(SHUTDOWN_MESSAGE))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s / 2)

    # -- StreamingRecognize ------------------------------------------------------------------

    async def StreamingRecognize(self, requests, context):
        call = _StreamCall(self, next(self._ids), context.peer())  # peer now: an ended call can crash grpc.aio
        status = Status(grpc.StatusCode.CANCELLED, "cancelled by the client")
        try:
            self._admit()
            call.admitted()
            call.session = StreamSession(await self._first_settings(requests), self.backend)
            self.sessions.add(call.session)
            helpers = [asyncio.create_task(self._read(requests, call.session)), asyncio.create_task(self._watch(call))]
            try:
                while not isinstance(item := await call.session.outbox.next(), Status):
                    yield response_proto(item)
            finally:
                for task in helpers:
                    task.cancel()
            status = item
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            status = self._failure(exc, f"stream {call.id}")
        finally:
            call.end(status)
        if not status.ok:
            if status.code in DRAINED_CODES:
                await self._drain(requests)
            await context.abort(status.code, status.message)

    @staticmethod
    async def _drain(requests, seconds: float = ERROR_DRAIN_S) -> None:
        """Read and drop what the client is still sending, until it half-closes or ``seconds`` pass.

        A client whose write fails because the call already ended reports its own
        INTERNAL error instead of our status (grpc.aio); letting its in-flight
        audio arrive first makes the real status reach it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with contextlib.suppress(Exception):
            while (left := deadline - loop.time()) > 0:
                await asyncio.wait_for(anext(requests), left)

    async def _first_settings(self, requests) -> RecognitionSettings:
        try:
            first = await asyncio.wait_for(anext(requests), self.options.idle_timeout_s)
        except StopAsyncIteration:
            raise InvalidRequest("the stream ended before its configuration; send streaming_config first") from None
        except asyncio.TimeoutError:
            raise IdleTimeout(f"no configuration within {self.options.idle_timeout_s:g} s") from None
        if first.WhichOneof("streaming_request") != "streaming_config":
            raise InvalidRequest("the first request must carry streaming_config; audio and control come after it")
        settings = settings_of(self.backend, first.streaming_config.config, first.streaming_config)
        if self.draining:
            raise ShuttingDown(SHUTDOWN_MESSAGE)
        return settings

    async def _read(self, requests, session: StreamSession) -> None:
        """The client's requests -> the session, until half-close, an error or the end of the stream."""
        idle = self.options.idle_timeout_s
        try:
            while not session.input_closed:
                if not await session.outbox.wait_room(idle):
                    continue  # _watch ends the call if the client is the reason
                try:
                    request = await asyncio.wait_for(anext(requests), idle)
                except StopAsyncIteration:
                    session.end_of_stream()
                    return
                except asyncio.TimeoutError:
                    raise IdleTimeout(f"no audio for {idle:g} s; send audio (silence counts) or close the stream")
                kind = request.WhichOneof("streaming_request")
                if kind == "audio_content":
                    if len(request.audio_content) > self.options.max_message_bytes:
                        raise MessageTooLarge(
                            f"audio message of {len(request.audio_content)} bytes exceeds the limit of "
                            f"{self.options.max_message_bytes}; send 20-100 ms per message")
                    session.audio(request.audio_content)
                elif kind == "control":
                    if request.control.kind != asr_pb2.Control.FINALIZE:
                        raise InvalidRequest(f"unknown control kind {request.control.kind}; use FINALIZE")
                    session.finalize()
                elif kind == "streaming_config":
                    raise InvalidRequest("streaming_config is allowed only in the first request")
                else:
                    raise InvalidRequest("empty request: set audio_content, control or (first) streaming_config")
        except asyncio.CancelledError:
            raise
        except IdleTimeout as exc:
            session.stop(exc)
        except Exception as exc:  # noqa: BLE001
            if not is_expected(exc):
                log.exception("reading stream requests failed")
            session.fail(exc)

    async def _watch(self, call: "_StreamCall") -> None:
        """End a call whose client has accepted no response for the idle timeout.

        gRPC's send is then blocked by flow control, so the handler cannot end the call
        itself; the session and its admission are released here (the call ends when the
        client reads or goes away).
        """
        idle = self.options.idle_timeout_s
        while call.session.outbox.sending_for() < idle:
            await asyncio.sleep(min(1.0, idle / 4))
        exc = IdleTimeout(f"the client read no responses for {idle:g} s")
        call.session.fail(exc)
        call.end(status_of(exc))

    def _failure(self, exc: Exception, what: str) -> Status:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        if not is_expected(exc):
            log.exception("%s failed", what)
        return status_of(exc)

    # -- unary calls ---------------------------------------------------------------------------

    async def Recognize(self, request, context):
        try:
            with self._admitted():
                settings = settings_of(self.backend, request.config)
                if len(request.audio) > self.options.max_recognize_bytes:
                    raise MessageTooLarge(f"audio of {len(request.audio)} bytes exceeds the Recognize limit of "
                                          f"{self.options.max_recognize_bytes}; stream it with StreamingRecognize")
                started = time.monotonic()
                result = await recognize(request.audio, settings, self.backend)
        except Exception as exc:  # noqa: BLE001
            status = self._failure(exc, "recognize")
            self.metrics.recognize_calls.labels(status.code.name).inc()
            await context.abort(status.code, status.message)
        self.metrics.recognize_calls.labels("OK").inc()
        return asr_pb2.RecognizeResponse(
            results=[result_proto(t) for t in result.results], audio_duration_ms=result.duration_ms,
            processing_time_ms=round(1000 * (time.monotonic() - started)))

    async def GetSpeechRecognitionConfig(self, request, context):
        options = self.options
        word_times = self.backend.aligner is not None
        return asr_pb2.GetSpeechRecognitionConfigResponse(
            models=[asr_pb2.ModelInfo(name=name, languages=SUPPORTED_LANGUAGES, word_time_offsets=word_times,
                                      is_default=name == self.backend.default_model)
                    for name in self.backend.engines],
            languages=[*SUPPORTED_LANGUAGES, *sorted(LANGUAGE_CODES)],
            min_sample_rate_hertz=MIN_SAMPLE_RATE, max_sample_rate_hertz=MAX_SAMPLE_RATE,
            encodings=[asr_pb2.LINEAR_PCM, asr_pb2.FLOAT32], channel_counts=list(range(1, MAX_CHANNELS + 1)),
            limits=asr_pb2.Limits(max_stream_seconds=options.max_stream_seconds,
                                  max_message_bytes=options.max_message_bytes, max_streams=options.max_streams,
                                  max_recognize_bytes=options.max_recognize_bytes),
            default_endpointing=endpointing_proto(options.endpointing),
            default_update_interval_ms=options.update_interval_ms)


class _StreamCall:
    """Bookkeeping of one StreamingRecognize call, ended exactly once by whoever ends it first."""

    def __init__(self, servicer: SpeechRecognitionServicer, call_id: int, peer: str) -> None:
        self.servicer, self.id, self.peer = servicer, call_id, peer
        self.started = time.monotonic()
        self.session: StreamSession | None = None
        self._admitted = self._ended = False

    def admitted(self) -> None:
        self._admitted = True
        self.servicer.metrics.active_streams.inc()

    def end(self, status: Status) -> None:
        if self._ended:
            return
        self._ended = True
        servicer, session = self.servicer, self.session
        if session is not None:
            session.close()
            servicer.sessions.discard(session)
        if self._admitted:
            servicer.metrics.active_streams.dec()
            servicer._release()
        servicer.metrics.streams.labels(status.code.name).inc()
        parts = [f"stream {self.id}", f"peer={self.peer}", f"status={status.code.name}",
                 f"wall={time.monotonic() - self.started:.2f}s"]
        if session is not None:
            parts += [f"model={session.settings.model}", f"audio={session.decoder.received_ms / 1000:.2f}s",
                      f"utterances={session.utterances}", f"finals={session.finals}",
                      f"interims={session.interims}", f"coalesced={session.outbox.coalesced}",
                      f"max_queued={session.outbox.high_water}"]
        if status.message:
            parts.append(f"message={status.message!r}")
        log.info(" ".join(parts))
