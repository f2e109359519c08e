"""What the OpenAI-compatible surfaces (REST and Realtime) share: OpenAI's error shape and the
one table that maps the session core's status codes onto it, model names, the bearer token.

REST answers ``{"error": {"message", "type", "param", "code"}}`` with an HTTP status; the
Realtime WebSocket sends ``{"type": "error", "event_id", "error": {...}}`` and, when the
error ends the session, closes with the table's WebSocket close code.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from typing import Iterable, Mapping

from .auth import bearer_matches, token_matches

# OpenAI's model names (whisper-1, gpt-4o-transcribe, gpt-4o-mini-transcribe-..., ...) select the
# server's default model, so clients whose model field is fixed work unchanged.
OPENAI_MODEL_PREFIXES = ("whisper", "gpt-")
SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."  # the browser form of the key (no headers on a WebSocket)


@dataclass(frozen=True)
class OpenAIError:
    http_status: int
    type: str  # OpenAI's error type
    code: str  # OpenAI-style error code
    close_code: int  # WebSocket close code when the error ends a realtime session


# The one table: the core's status code (by name: session.errors.Code, same names as gRPC's) -> OpenAI.
ERRORS: dict[str, OpenAIError] = {
    "INVALID_ARGUMENT": OpenAIError(400, "invalid_request_error", "invalid_value", 1008),
    "OUT_OF_RANGE": OpenAIError(400, "invalid_request_error", "audio_too_long", 1008),
    "UNAUTHENTICATED": OpenAIError(401, "invalid_request_error", "invalid_api_key", 1008),
    "RESOURCE_EXHAUSTED": OpenAIError(429, "rate_limit_error", "rate_limit_exceeded", 1013),
    "DEADLINE_EXCEEDED": OpenAIError(408, "invalid_request_error", "idle_timeout", 1008),
    "UNAVAILABLE": OpenAIError(503, "server_error", "service_unavailable", 1012),
    "CANCELLED": OpenAIError(499, "invalid_request_error", "cancelled", 1000),
    "INTERNAL": OpenAIError(500, "server_error", "internal_error", 1011),
}
# Only the HTTP surface can tell a request body that is too large from a full server.
PAYLOAD_TOO_LARGE = OpenAIError(413, "invalid_request_error", "payload_too_large", 1009)
NOT_FOUND = OpenAIError(404, "invalid_request_error", "model_not_found", 1008)


def error_for(code_name: str) -> OpenAIError:
    return ERRORS.get(code_name, ERRORS["INTERNAL"])


def error_body(message: str, error: OpenAIError, *, code: str | None = None, param: str | None = None) -> dict:
    """The body of an HTTP error response."""
    return {"error": {"message": message, "type": error.type, "param": param, "code": code or error.code}}


class EventIds:
    """``event_<session>_<n>`` ids of one connection's server events."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"event_{self._prefix}{next(self._count):06d}"


def error_event(event_id: str, message: str, error: OpenAIError, *, code: str | None = None,
                param: str | None = None, client_event_id: str | None = None) -> dict:
    """A realtime ``error`` server event."""
    return {"type": "error", "event_id": event_id,
            "error": {"type": error.type, "code": code or error.code, "message": message, "param": param,
                      "event_id": client_event_id}}


def model_for(requested: str | None, models: Iterable[str], default: str) -> str | None:
    """Our model for the client's ``model`` field; None when it names nothing this server has."""
    name = (requested or "").strip()
    if not name or name.startswith(OPENAI_MODEL_PREFIXES):
        return default
    return name if name in set(models) else None


def token_ok(expected: str | None, headers: Mapping[str, str]) -> bool:
    """``Authorization: Bearer T`` or, from a browser, the ``openai-insecure-api-key.T`` subprotocol."""
    if expected is None:
        return True
    if bearer_matches(headers.get("Authorization"), expected):
        return True
    return any(p.strip().startswith(KEY_SUBPROTOCOL_PREFIX)
               and token_matches(p.strip()[len(KEY_SUBPROTOCOL_PREFIX):], expected)
               for p in headers.get("Sec-WebSocket-Protocol", "").split(","))


# -- result shapes both APIs share -------------------------------------------------------------

def words_of(results: Iterable) -> list[dict]:
    """Each word with its times in s and (our extensions) its confidence, 0-1, and speaker."""
    words = []
    for w in (w for t in results for w in t.words):
        word = {"word": w.word, "start": w.start_ms / 1000, "end": w.end_ms / 1000}
        if w.confidence is not None:
            word["confidence"] = w.confidence
        if w.speaker is not None:
            word["speaker"] = speaker_name(w.speaker)
        words.append(word)
    return words


def speaker_name(label: int) -> str:
    """Our speaker label 1, 2, ... as OpenAI's diarization names speakers: "A", "B", ..."""
    return chr(ord("A") + label - 1) if label <= 26 else f"S{label}"


def speaker_segments(results: Iterable) -> list[dict]:
    """OpenAI's diarized segments (``transcript.text.segment``): one per speaker turn of each final
    (a turn's text is empty when the final had no word times to split its text by)."""
    segments = []
    for t in results:
        for turn in t.turns:
            segments.append({"type": "transcript.text.segment", "id": f"seg_{len(segments):03d}",
                             "start": turn.start_ms / 1000, "end": turn.end_ms / 1000, "text": turn.text,
                             "speaker": speaker_name(turn.speaker)})
    return segments


def logprobs_of(tokens) -> list[dict]:
    """OpenAI's ``logprobs``: each token's text, log-probability and bytes."""
    return [{"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)} for t in tokens]
