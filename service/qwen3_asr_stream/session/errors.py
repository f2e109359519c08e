"""Domain errors of the server and the one table that maps them to gRPC status codes.

Sessions and the servicer raise these (or the engine's and the audio decoder's own
errors); ``status_of`` turns any of them into the status the client gets. Anything
not in the table is a bug: INTERNAL, with the details only in the server log.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from ..engine.engine import EngineClosed, EngineFull
from ..audio.input import InvalidAudio


class InvalidRequest(ValueError):
    """The request (configuration, order of messages, a field value) is wrong."""


class MessageTooLarge(Exception):
    """One message carries more audio than the server accepts at once."""


class ServerBusy(Exception):
    """The server already serves as many streams as it allows."""


class ShuttingDown(Exception):
    """The server is draining: no new calls, running streams end after their utterance."""


class StreamTooLong(Exception):
    """The stream reached the maximum audio duration."""


class IdleTimeout(Exception):
    """The client sent nothing, or read nothing, for too long."""


class RecognitionFailed(Exception):
    """The engine failed on an utterance (the server log has the traceback)."""


@dataclass(frozen=True)
class Status:
    code: grpc.StatusCode
    message: str

    @property
    def ok(self) -> bool:
        return self.code is grpc.StatusCode.OK


OK = Status(grpc.StatusCode.OK, "")

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidAudio, grpc.StatusCode.INVALID_ARGUMENT),
    (MessageTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ServerBusy, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (EngineFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StreamTooLong, grpc.StatusCode.OUT_OF_RANGE),
    (IdleTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (ShuttingDown, grpc.StatusCode.UNAVAILABLE),
    (EngineClosed, grpc.StatusCode.UNAVAILABLE),
    (RecognitionFailed, grpc.StatusCode.INTERNAL),
)

INTERNAL_MESSAGE = "internal server error; the server log has the details"


def status_of(exc: BaseException) -> Status:
    """The status a client gets for ``exc``."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return Status(code, str(exc) or kind.__doc__ or kind.__name__)
    return Status(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def is_expected(exc: BaseException) -> bool:
    """Whether ``exc`` is a client-facing condition (not a server bug worth a traceback)."""
    return any(isinstance(exc, kind) for kind, _ in _CODES)
