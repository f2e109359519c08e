"""gRPC server interceptors: the bearer token, and requests that are not valid messages.

Both keep the method's cardinality (a streaming method gets a streaming handler),
so every service on the port (asr.v1, Riva) is covered without code of its own.
"""

from __future__ import annotations

import inspect
import logging
import time

import grpc
import grpc.aio

from ..protocols.grpc_stream import read_before_reject
from ..session.errors import InvalidRequest
from ..protocols.auth import UNAUTHENTICATED_MESSAGE, bearer_matches

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"  # exempt from the token: load balancers and kubelets probe it
# A stream without the token is read (and dropped) this long before its status, unless its client
# half-closes first: it holds no admission slot, and a grpc.aio client still writing when the call
# ends may see INTERNAL instead of UNAUTHENTICATED (see read_before_reject).
UNAUTHENTICATED_READ_S = 5.0
MALFORMED_LOG_INTERVAL_S = 10.0  # at most one log line per interval about malformed requests

_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler, (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler, (True, True): grpc.stream_stream_rpc_method_handler,
}


def _behavior(handler):
    return (handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream)


def _same_kind(handler, behavior, deserializer=None):
    make = _HANDLER_KINDS[(handler.request_streaming, handler.response_streaming)]
    return make(behavior, request_deserializer=deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer)


class BearerTokenAuth(grpc.aio.ServerInterceptor):
    """Calls without ``authorization: Bearer <token>`` fail with UNAUTHENTICATED (health checks pass)."""

    def __init__(self, token: str, on_reject=None) -> None:
        self._token = token
        self._on_reject = on_reject

    def _authorized(self, metadata) -> bool:
        return any(key == "authorization" and bearer_matches(value, self._token) for key, value in metadata or ())

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX) or self._authorized(details.invocation_metadata):
            return handler
        if self._on_reject is not None:
            self._on_reject()
        streaming = handler.request_streaming

        async def deny(request, context):
            if streaming:  # let the client's in-flight requests arrive, so it gets this status
                await read_before_reject(request, UNAUTHENTICATED_READ_S)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

        return _same_kind(handler, deny)


class _Malformed:
    """What a request that does not parse becomes, instead of an exception inside gRPC."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class MalformedRequests(grpc.aio.ServerInterceptor):
    """A request that is not a valid message of its method gets INVALID_ARGUMENT that blames the
    request, and one log line at most every MALFORMED_LOG_INTERVAL_S (no traceback): a client
    cannot fill the log. Without this, grpc.aio answers UNKNOWN or INTERNAL and logs a traceback."""

    def __init__(self) -> None:
        self._last_log = -MALFORMED_LOG_INTERVAL_S
        self._suppressed = 0

    def _note(self, method: str, error: Exception) -> str:
        message = (f"the request is not a valid {method.rsplit('/', 2)[-2]} message ({error}); "
                   f"send messages of the service's published .proto")
        now = time.monotonic()
        if now - self._last_log >= MALFORMED_LOG_INTERVAL_S:
            more = f" (+{self._suppressed} more since the last line)" if self._suppressed else ""
            log.warning("malformed request on %s: %s%s", method, error, more)
            self._last_log, self._suppressed = now, 0
        else:
            self._suppressed += 1
        return message

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method, parse, behavior = details.method, handler.request_deserializer, _behavior(handler)

        def tolerant(data: bytes):
            try:
                return parse(data)
            except Exception as exc:  # noqa: BLE001 - any parse failure is the client's
                return _Malformed(exc)

        note = self._note

        async def checked(requests):
            async for request in requests:
                if isinstance(request, _Malformed):
                    raise InvalidRequest(note(method, request.error))
                yield request

        async def refuse(request, context):
            if isinstance(request, _Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, note(method, request.error))

        # grpc.aio picks how to run a behaviour by its kind (coroutine / async generator function):
        # the wrapper keeps the kind of the method's own behaviour.
        streams = handler.request_streaming
        if inspect.isasyncgenfunction(behavior):
            async def guarded(request, context):
                if streams:
                    request = checked(request)
                else:
                    await refuse(request, context)
                async for response in behavior(request, context):
                    yield response
        else:  # a coroutine: returns the response, or writes responses with context.write()
            async def guarded(request, context):
                if streams:
                    request = checked(request)
                else:
                    await refuse(request, context)
                return await behavior(request, context)

        return _same_kind(handler, guarded, tolerant)
