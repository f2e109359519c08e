"""What Deepgram's live and pre-recorded surfaces share: the one error table, the key check,
and the JSON shapes of results, words and metadata.

Errors: an HTTP refusal (before a WebSocket upgrade, or of a pre-recorded request) is
Deepgram's body ``{"err_code", "err_msg", "request_id"}`` with the table's HTTP status and
the headers ``dg-request-id`` / ``dg-error``; a live stream that ends in error gets an
``{"type": "Error", "variant", "description"}`` message and a close frame with the table's
code and a reason that starts with Deepgram's payload (``DATA-0000``, ``NET-0001``, ...).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Mapping

from aiohttp import web

from ..session.types import Transcript, Word
from .auth import token_matches

KEY_SUBPROTOCOL = "token"  # browsers: new WebSocket(url, ["token", KEY])
KEY_MESSAGE = ("missing or wrong API key: send 'Authorization: Token <key>' (browsers: the WebSocket subprotocols "
               "'token', '<key>')")


@dataclass(frozen=True)
class DeepgramError:
    http_status: int
    err_code: str  # the HTTP body's err_code
    close_code: int  # WebSocket close code when the error ends a live stream
    payload: str  # Deepgram's close-reason payload


# The one table: the core's status code (session.errors.Code names) -> Deepgram.
ERRORS: dict[str, DeepgramError] = {
    "INVALID_ARGUMENT": DeepgramError(400, "Bad Request", 1008, "DATA-0000"),
    "OUT_OF_RANGE": DeepgramError(400, "Bad Request", 1008, "DATA-0001"),
    "UNAUTHENTICATED": DeepgramError(401, "INVALID_AUTH", 1008, "AUTH-0000"),
    "RESOURCE_EXHAUSTED": DeepgramError(429, "TOO_MANY_REQUESTS", 1013, "NET-0002"),
    "DEADLINE_EXCEEDED": DeepgramError(408, "TIMEOUT", 1011, "NET-0001"),
    "UNAVAILABLE": DeepgramError(503, "SERVICE_UNAVAILABLE", 1012, "NET-0003"),
    "CANCELLED": DeepgramError(499, "CANCELLED", 1000, ""),
    "INTERNAL": DeepgramError(500, "INTERNAL_SERVER_ERROR", 1011, "NET-0000"),
}
# Only the HTTP and WebSocket layers can tell a message or body that is too large from a full server.
TOO_LARGE = DeepgramError(413, "PAYLOAD_TOO_LARGE", 1009, "DATA-0002")


def error_for(code_name: str) -> DeepgramError:
    return ERRORS.get(code_name, ERRORS["INTERNAL"])


def error_response(message: str, error: DeepgramError, request_id: str) -> web.Response:
    """Deepgram's HTTP error: its body, its status, and the dg- headers a WebSocket client can read."""
    return web.json_response({"err_code": error.err_code, "err_msg": message, "request_id": request_id},
                             status=error.http_status,
                             headers={"dg-request-id": request_id, "dg-error": message[:500]})


def key_ok(expected: str | None, headers: Mapping[str, str]) -> bool:
    """``Authorization: Token KEY`` (or ``Bearer``), or the subprotocols ``token, KEY`` of a browser."""
    if expected is None:
        return True
    scheme, _, given = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() in ("token", "bearer") and token_matches(given.strip(), expected):
        return True
    offered = [p.strip() for p in headers.get("Sec-WebSocket-Protocol", "").split(",")]
    return KEY_SUBPROTOCOL in offered and any(token_matches(p, expected) for p in offered if p != KEY_SUBPROTOCOL)


def model_uuid(name: str) -> str:
    """A stable id for one of our models (Deepgram's results name models by UUID)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"qwen3-asr-stream:{name}"))


def model_info(name: str) -> dict:
    return {"name": name, "arch": "qwen3-asr"}


_EDGE_PUNCTUATION = re.compile(r"^[^\w]+|[^\w]+$")


def words_json(t: Transcript) -> list[dict]:
    """Deepgram's words: ``word`` lower-case without punctuation, ``punctuated_word`` as in the
    transcript (when the transcript's spaces give one token per word), times in s."""
    tokens = t.text.split()
    punctuated = tokens if len(tokens) == len(t.words) else None
    out = []
    for i, w in enumerate(t.words):
        item = {"word": _EDGE_PUNCTUATION.sub("", w.word).lower() or w.word, "start": w.start_ms / 1000,
                "end": w.end_ms / 1000}
        if punctuated is not None:
            item["punctuated_word"] = punctuated[i]
        confidence = getattr(w, "confidence", None)
        if confidence is not None:
            item["confidence"] = confidence
        if w.speaker is not None:  # diarize: Deepgram counts speakers from 0 (no speaker_confidence: none is measured)
            item["speaker"] = w.speaker - 1
        out.append(item)
    return out


def alternative_json(t: Transcript) -> dict:
    alternative = {"transcript": t.text.strip(), "words": words_json(t)}
    confidence = getattr(t, "confidence", None)
    if confidence is not None:
        alternative["confidence"] = confidence
    return alternative


def channel_index(t: Transcript, channels: int) -> list[int]:
    """Deepgram's ``channel_index``: [the result's channel from 0, the channels] (0 when mixed down)."""
    return [t.channel - 1 if t.channel is not None else 0, channels]


def last_word_end_ms(t: Transcript) -> int:
    words: tuple[Word, ...] = t.words
    return words[-1].end_ms if words else t.end_ms
