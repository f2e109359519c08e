"""What the gRPC protocols (asr.v1, Riva) share: the status table and one streaming call on the core.

    async def StreamingRecognize(self, requests, context):
        async for response in serve_stream(self.calls, "asr.v1", requests, context, self._start):
            yield response

``start(requests)`` reads the protocol's first request and returns the call's
settings, its remaining requests as audio bytes / Control, and the function that
turns a result or event into the protocol's response (None: nothing to send).
Admission, the session, its end and the status are the same for every protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator, Awaitable, Callable

import grpc

from ..session.calls import Calls
from ..session.errors import CallEnded, Code, InvalidRequest, MessageTooLarge, Status, is_expected, status_of
from ..session.types import RecognitionSettings

log = logging.getLogger(__name__)

ERROR_DRAIN_S = 1.0  # how long a refused or failed stream reads the client's requests before its status
# Statuses after which the client is likely still sending (see read_before_reject).
READ_BEFORE_REJECT = (Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED, Code.OUT_OF_RANGE, Code.UNAVAILABLE,
                      Code.UNAUTHENTICATED)

Start = Callable[[AsyncIterator], Awaitable[tuple[RecognitionSettings, AsyncIterator, Callable]]]


def grpc_code(code: Code) -> grpc.StatusCode:
    """The one table of the gRPC protocols: the core's codes are named as gRPC's."""
    return grpc.StatusCode[code.name]


async def read_before_reject(requests, seconds: float = ERROR_DRAIN_S) -> None:
    """Read and drop what the client is still sending, until it half-closes or ``seconds`` pass.

    A grpc.aio client whose write fails because the call already ended reports its
    own INTERNAL error instead of our status; letting its in-flight requests arrive
    first makes the real status reach it.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    with contextlib.suppress(Exception):
        while (left := deadline - loop.time()) > 0:
            await asyncio.wait_for(anext(requests), left)


async def first_request(requests, rest: str = "audio comes"):
    """The first request of a stream, which must carry ``streaming_config``; raises InvalidRequest
    (a client that sends nothing is ended by the core's watchdog, ``StreamCall.before_session``)."""
    try:
        first = await anext(requests)
    except StopAsyncIteration:
        raise InvalidRequest("the stream ended before its configuration; send streaming_config first") from None
    if first.WhichOneof("streaming_request") != "streaming_config":
        raise InvalidRequest(f"the first request must carry streaming_config; {rest} after it")
    return first


async def serve_stream(calls: Calls, protocol: str, requests, context, start: Start):
    """One streaming call: admission, the session fed from the requests, its results as the
    protocol's responses, then the status (read-before-reject for errors about the input)."""
    peer = context.peer()  # now: an ended call can crash grpc.aio
    reader = None
    try:
        with calls.stream(protocol, peer) as call:
            try:
                started = await call.before_session(start(requests))
                if started is None:  # ended by the watchdog: idle, or the server drains
                    raise CallEnded(call.status)
                settings, inputs, response_of = started
                session = call.open(settings)
                reader = asyncio.create_task(call.pump(inputs))
                while not isinstance(item := await session.next(), Status):
                    response = response_of(item)
                    if response is not None:
                        yield response
                status = item
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status
                status = status_of(exc)
                if not is_expected(exc):
                    log.exception("%s stream %d failed", protocol, call.id)
            finally:
                if reader is not None:
                    reader.cancel()
            if status.code in READ_BEFORE_REJECT:
                await read_before_reject(requests)  # the call keeps its admission meanwhile
            call.end(status)
    except Exception as exc:  # noqa: BLE001 - refused at admission
        status = status_of(exc)
        if status.code in READ_BEFORE_REJECT:
            await read_before_reject(requests)
    if not status.ok:
        await context.abort(grpc_code(status.code), status.message)


def check_recognize_size(audio: bytes, limit: int) -> None:
    """A unary Recognize's audio must fit the server's limit (``max_recognize_bytes``)."""
    if len(audio) > limit:
        raise MessageTooLarge(f"audio of {len(audio)} bytes exceeds the Recognize limit of {limit}; "
                              "stream it with StreamingRecognize")


async def abort_with(context, exc: Exception) -> None:
    """End a unary call with the status of ``exc``."""
    status = status_of(exc)
    await context.abort(grpc_code(status.code), status.message)
