"""Calls of every protocol: admission, the idle watchdog, drain, one log line per call.

One ``Calls`` per server (the server builds it), shared by the protocol adapters:

    with calls.stream("asr.v1", peer) as call:   # ServerBusy / ShuttingDown when refused
        session = call.open(settings)
        reader = asyncio.create_task(call.pump(inputs))   # or feed the session yourself
        while not isinstance(item := await session.next(), Status):
            send(item)
        call.end(item)

    with calls.unary("openai.rest", peer) as call:
        ... await recognize(...) ...; call.end(OK)

``max_streams`` calls run at once (streams and unary calls together); while the
server drains, new calls are refused with UNAVAILABLE and running streams end
after the utterance in progress (all of them at half the grace period).

A stream is watched from its admission: before its session opens (a client still
configuring, a Realtime connection without audio yet) it ends when it hears nothing
from the client for the idle timeout, and at once when the server drains; the adapter
awaits the client's messages of that phase through ``call.before_session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, TypeVar

from .core import Session
from .errors import OK, CallEnded, Cancelled, IdleTimeout, ServerBusy, ShuttingDown, Status, is_expected, status_of
from .types import Backend, RecognitionSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

SHUTDOWN_MESSAGE = "the server is shutting down; reconnect to continue"


class Control(enum.Enum):
    """Inputs of ``StreamCall.pump`` besides audio bytes."""

    FINALIZE = "finalize"
    CLEAR = "clear"


@dataclass(frozen=True)
class SetKeyTerms:
    """An input of ``StreamCall.pump``: key terms for the utterances that start from now on
    (checked by ``Session.set_key_terms`` as for a new call)."""

    terms: tuple[str, ...]


class Calls:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.limits = backend.limits
        self.metrics = backend.metrics
        self.sessions: set[Session] = set()
        self.streams: set[StreamCall] = set()  # admitted streaming calls, with or without a session
        self.active = 0
        self.draining = False
        self._idle = asyncio.Event()  # set while no call runs
        self._idle.set()
        self._ids = itertools.count(1)

    def stream(self, protocol: str, peer: str) -> "StreamCall":
        """Admit a streaming call now; raises ServerBusy or ShuttingDown."""
        self._admit()
        return StreamCall(self, next(self._ids), protocol, peer)

    @contextlib.contextmanager
    def unary(self, protocol: str, peer: str):
        """Admit a unary call for the ``with`` block; raises ServerBusy or ShuttingDown."""
        self._admit()
        call = UnaryCall(self, next(self._ids), protocol, peer)
        try:
            yield call
        except Exception as exc:
            if not is_expected(exc):
                log.exception("unary %d failed", call.id)
            call.end(status_of(exc))
            raise
        except BaseException:
            call.end(call.status)  # cancelled
            raise
        else:
            call.end(OK)

    def check_open(self) -> None:
        """Raise ShuttingDown once the drain has begun (for a call that admitted itself earlier)."""
        if self.draining:
            raise ShuttingDown(SHUTDOWN_MESSAGE)

    async def drain(self, grace_s: float) -> None:
        """Refuse new calls; let every stream finish its utterance (forced after half the grace);
        returns when no call runs or the grace is over."""
        self.draining = True
        for call in list(self.streams):
            if call.session is None:  # nothing to finish: ends now
                call.end(status_of(ShuttingDown(SHUTDOWN_MESSAGE)))
        for session in list(self.sessions):
            session.drain(ShuttingDown(SHUTDOWN_MESSAGE))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s / 2)
            return
        for session in list(self.sessions):
            session.stop(ShuttingDown(SHUTDOWN_MESSAGE))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s / 2)

    def _admit(self) -> None:
        if self.draining:
            self.metrics.rejected.labels("shutting_down").inc()
            raise ShuttingDown(SHUTDOWN_MESSAGE)
        if self.active >= self.limits.max_streams:
            self.metrics.rejected.labels("busy").inc()
            raise ServerBusy(f"the server is serving its limit of {self.limits.max_streams} streams; retry later")
        self.active += 1
        self._idle.clear()

    def _release(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()


class _Call:
    kind = "call"

    def __init__(self, calls: Calls, call_id: int, protocol: str, peer: str) -> None:
        self.calls, self.id, self.protocol, self.peer = calls, call_id, protocol, peer
        self.started = time.monotonic()
        self.status = status_of(Cancelled("cancelled by the client"))
        self.ended = False

    def end(self, status: Status) -> None:
        """The call is over with ``status``: release its admission, count it, log one line (once)."""
        if self.ended:
            return
        self.ended = True
        self.status = status
        self._release()
        self.calls._release()
        self._count(status)
        parts = [f"{self.kind} {self.id}", f"protocol={self.protocol}", f"peer={self.peer}",
                 f"status={status.code.name}", f"wall={time.monotonic() - self.started:.2f}s", *self._details()]
        if status.message:
            parts.append(f"message={status.message!r}")
        log.info(" ".join(parts))

    def _release(self) -> None:
        pass

    def _count(self, status: Status) -> None:
        self.calls.metrics.streams.labels(status.code.name).inc()

    def _details(self) -> list[str]:
        return []


class UnaryCall(_Call):
    kind = "unary"

    def _count(self, status: Status) -> None:
        self.calls.metrics.recognize_calls.labels(status.code.name).inc()


class StreamCall(_Call):
    kind = "stream"

    def __init__(self, calls: Calls, call_id: int, protocol: str, peer: str) -> None:
        super().__init__(calls, call_id, protocol, peer)
        self.session: Session | None = None
        self.heard_at = time.monotonic()  # the client's last message before the session opened
        self._ended = asyncio.Event()
        calls.metrics.active_streams.inc()
        calls.streams.add(self)
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    def __enter__(self) -> "StreamCall":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if not isinstance(exc, Exception):  # None, or cancelled / closed by the protocol
            self.end(self.status)
            return
        if not is_expected(exc):
            log.error("%s %d failed", self.kind, self.id, exc_info=exc)
        self.end(status_of(exc))

    def open(self, settings: RecognitionSettings) -> Session:
        """The call's session; it is drained at shutdown and watched for idleness."""
        assert self.session is None, "one session per call"
        if self.ended:
            raise CallEnded(self.status)  # the watchdog ended it meanwhile (idle, drain)
        self.calls.check_open()
        self.session = Session(settings, self.calls.backend)
        self.calls.sessions.add(self.session)
        return self.session

    async def before_session(self, message: Awaitable[T]) -> T | None:
        """Await ``message`` (the client's next message, or the reading of its configuration)
        before the session opens; None when the call ends meanwhile (nothing from the client
        for the idle timeout, or the server drains): ``status`` says how."""
        if self.ended:
            if asyncio.iscoroutine(message):
                message.close()
            return None
        reading = asyncio.ensure_future(message)
        ended = asyncio.get_running_loop().create_task(self._ended.wait())
        try:
            await asyncio.wait({reading, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reading
        if reading.cancelled():
            return None
        self.heard_at = time.monotonic()
        return reading.result()

    async def pump(self, inputs: AsyncIterator) -> None:
        """Feed the session from ``inputs`` (bytes of audio, a Control or SetKeyTerms) until it ends; the
        end of ``inputs`` is the client's half-close. Reads no more while the client's
        unread results are at the limit (back-pressure)."""
        session = self.session
        assert session is not None, "open() first"
        idle = self.calls.limits.idle_timeout_s
        iterator = aiter(inputs)
        try:
            while session.taking_input:
                if not await session.wait_room(idle):
                    continue  # the watchdog ends the call if the client is the reason
                try:
                    item = await anext(iterator)
                except StopAsyncIteration:
                    session.end_input()
                    return
                if isinstance(item, (bytes, bytearray, memoryview)):
                    session.audio(bytes(item))
                elif item is Control.FINALIZE:
                    session.finalize()
                elif item is Control.CLEAR:
                    session.clear()
                elif isinstance(item, SetKeyTerms):
                    session.set_key_terms(item.terms)
                else:
                    raise TypeError(f"pump() takes audio bytes or a Control, not {type(item).__name__}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad request from the adapter's conversion, or a bug
            session.fail(exc)

    async def _watch(self) -> None:
        """End a call whose client sends nothing (after its due results) or reads nothing.

        Before the session opens, nothing heard for the idle timeout ends the call here. A
        client that accepts no response blocks the protocol's send, so the handler cannot
        end the call itself; the session and the admission are released here (the
        connection ends when the client reads or goes away).
        """
        idle = self.calls.limits.idle_timeout_s
        while not self.ended:
            await asyncio.sleep(min(1.0, idle / 4))
            session = self.session
            if session is None:
                if time.monotonic() - self.heard_at >= idle:
                    self.end(status_of(IdleTimeout(f"no audio for {idle:g} s; configure the call and send audio "
                                                   f"(silence counts), or close")))
                    return
                continue
            if session.outbox.sending_for() >= idle:
                exc = IdleTimeout(f"the client read no responses for {idle:g} s")
                session.fail(exc)
                self.end(status_of(exc))
                return
            if session.taking_input and session.idle_for() >= idle:
                session.stop(IdleTimeout(f"no audio for {idle:g} s; send audio (silence counts) or close the stream"))

    def _release(self) -> None:
        self.calls.metrics.active_streams.dec()
        self.calls.streams.discard(self)
        self._ended.set()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self.session is not None:
            self.session.close()
            self.calls.sessions.discard(self.session)

    def _details(self) -> list[str]:
        session = self.session
        if session is None:
            return []
        return [f"model={session.settings.model}", f"audio={session.received_ms / 1000:.2f}s",
                f"utterances={session.utterances}", f"finals={session.finals}", f"interims={session.interims}",
                f"coalesced={session.outbox.coalesced}", f"max_queued={session.outbox.high_water}"]
