"""Domain errors of a recognition call and the one table that maps them to a status.

Sessions, admission and the protocol adapters raise these (or the engine's and
the audio decoder's own errors); ``status_of`` turns any of them into the
protocol-neutral ``Status`` the call ends with. Each protocol adapter has one
table of its own from ``Code`` to its wire form (a gRPC status code, an HTTP
status and an OpenAI error type). Anything not in the table is a bug: INTERNAL,
with the details only in the server log.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..audio.input import InvalidAudio
from ..engine.text_layer import EngineClosed, EngineFull


class Code(enum.Enum):
    """How a call ended; the names are gRPC's (``grpc.StatusCode[code.name]``)."""

    OK = "ok"
    CANCELLED = "cancelled"
    INVALID_ARGUMENT = "invalid_argument"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNAUTHENTICATED = "unauthenticated"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    OUT_OF_RANGE = "out_of_range"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class InvalidRequest(ValueError):
    """The request (configuration, order of messages, a field value) is wrong."""


class MessageTooLarge(Exception):
    """One message carries more audio than the server accepts at once."""


class ServerBusy(Exception):
    """The server already serves as many calls as it allows."""


class ShuttingDown(Exception):
    """The server is draining: no new calls, running streams end after their utterance."""


class StreamTooLong(Exception):
    """The stream reached the maximum audio duration."""


class IdleTimeout(Exception):
    """The client sent nothing, or read nothing, for too long."""


class Unauthenticated(Exception):
    """The call carries no token, or the wrong one."""


class RecognitionFailed(Exception):
    """The engine failed on an utterance (the server log has the traceback)."""


class Cancelled(Exception):
    """The client went away or cancelled the call."""


@dataclass(frozen=True)
class Status:
    code: Code
    message: str

    @property
    def ok(self) -> bool:
        return self.code is Code.OK


OK = Status(Code.OK, "")


class CallEnded(Exception):
    """A call ended with ``status`` (unary recognition raises it for a status other than OK)."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.message)
        self.status = status

_CODES: tuple[tuple[type[BaseException], Code], ...] = (
    (InvalidRequest, Code.INVALID_ARGUMENT),
    (InvalidAudio, Code.INVALID_ARGUMENT),
    (MessageTooLarge, Code.RESOURCE_EXHAUSTED),
    (ServerBusy, Code.RESOURCE_EXHAUSTED),
    (EngineFull, Code.RESOURCE_EXHAUSTED),
    (StreamTooLong, Code.OUT_OF_RANGE),
    (IdleTimeout, Code.DEADLINE_EXCEEDED),
    (Unauthenticated, Code.UNAUTHENTICATED),
    (ShuttingDown, Code.UNAVAILABLE),
    (EngineClosed, Code.UNAVAILABLE),
    (Cancelled, Code.CANCELLED),
    (RecognitionFailed, Code.INTERNAL),
)

INTERNAL_MESSAGE = "internal server error; the server log has the details"


def status_of(exc: BaseException) -> Status:
    """The status a client gets for ``exc``."""
    if isinstance(exc, CallEnded):
        return exc.status
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return Status(code, str(exc) or kind.__doc__ or kind.__name__)
    return Status(Code.INTERNAL, INTERNAL_MESSAGE)


def is_expected(exc: BaseException) -> bool:
    """Whether ``exc`` is a client-facing condition (not a server bug worth a traceback)."""
    return isinstance(exc, CallEnded) or any(isinstance(exc, kind) for kind, _ in _CODES)
