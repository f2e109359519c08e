"""Request bodies of the HTTP surfaces: read whole, bounded and under a stall timeout, before a
call is admitted; multipart forms parsed from the bytes read.

    try:
        body = await read_body(request, limit, backend.limits.idle_timeout_s, "openai.rest")
    except Exception as exc:                  # BodyTooLarge, IdleTimeout, Cancelled (already logged)
        return await refuse_upload(request, exc, <the protocol's error response for status_of(exc)>)
    with calls.unary("openai.rest", peer):   # admission only once the upload is here
        parts = await form_parts(request.headers, body)   # InvalidRequest for a malformed form

An upload is read before admission so that a client sending slowly (or stopping mid-body)
holds a connection, never one of the ``max_streams`` slots; a read that brings nothing
for ``idle_s`` ends it (DEADLINE_EXCEEDED: 408 on the OpenAI surface). A client that goes
away mid-upload is a cancel (one log line, no traceback). Every HTTP endpoint that takes a
body reads it here, so each gets the same guarantee.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Mapping

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.multipart import BodyPartReader, MultipartReader
from aiohttp.streams import StreamReader

from ..session.errors import Cancelled, IdleTimeout, InvalidRequest, MessageTooLarge, status_of

log = logging.getLogger(__name__)


class BodyTooLarge(MessageTooLarge):
    """The request body is larger than the endpoint accepts (HTTP 413)."""


class BodyUnreadable(InvalidRequest):
    """The request body does not decode as its headers declare (Content-Encoding, chunks)."""


async def read_body(request: web.Request, limit: int, idle_s: float, protocol: str) -> bytes:
    """The whole body of ``request``, at most ``limit`` bytes; raises BodyTooLarge, IdleTimeout (no
    bytes for ``idle_s``), Cancelled (the client went away) or InvalidRequest (a body that does not
    decode: BodyUnreadable), each logged in one line."""
    try:
        declared = request.content_length
        if declared is not None and declared > limit:
            raise BodyTooLarge(f"the request body of {declared} bytes is larger than this server's limit of "
                               f"{limit} bytes")
        chunks, size = [], 0
        while True:
            try:
                chunk = await asyncio.wait_for(request.content.readany(), idle_s)
            except asyncio.TimeoutError:
                raise IdleTimeout(f"the upload stalled: no bytes for {idle_s:g} s ({size} received); "
                                  f"send the whole body without pauses") from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"the request body is larger than this server's limit of {limit} bytes")
            chunks.append(chunk)
    except ConnectionError:
        exc = Cancelled("the client closed the connection during the upload")
        _log(protocol, request, exc)
        raise exc from None
    except web.RequestPayloadError as exc:  # aiohttp's: a Content-Encoding that does not decode, bad chunks
        bad = BodyUnreadable(f"the request body cannot be read ({exc.__cause__ or exc}); send it as declared "
                             f"by its Content-Encoding and Transfer-Encoding")
        _log(protocol, request, bad)
        raise bad from None
    except (BodyTooLarge, IdleTimeout) as exc:
        _log(protocol, request, exc)
        raise


async def refuse_upload(request: web.Request, exc: BaseException, response: web.StreamResponse) -> web.StreamResponse:
    """Answer an upload that ``read_body`` refused with ``response``. After a stall or a body that
    does not decode the connection is closed once the answer is out (aiohttp would wait up to its
    lingering time, 10 s, for the rest of the body, or fail reading it again); a body too large
    keeps aiohttp's lingering, so that a client still sending reads the answer, not a reset."""
    if isinstance(exc, (IdleTimeout, BodyUnreadable)) and request.transport is not None:
        response.force_close()  # "Connection: close": the client must not reuse the connection
        await response.prepare(request)
        await response.write_eof()
        request.protocol.force_close()
    return response


def _log(protocol: str, request: web.Request, exc: Exception) -> None:
    status = status_of(exc)
    log.info("upload protocol=%s peer=%s status=%s message=%r", protocol, request.remote or "",
             status.code.name, status.message)


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    value: bytes | str  # bytes for a file part (as sent), text for a field (its charset and encodings undone)


def _reader_of(data: bytes) -> StreamReader:
    """A finished aiohttp stream holding ``data`` (what aiohttp's multipart parser reads from)."""
    loop = asyncio.get_running_loop()
    stream = StreamReader(BaseProtocol(loop), max(len(data), 1 << 16), loop=loop)
    stream.feed_data(data)
    stream.feed_eof()
    return stream


async def form_parts(headers: Mapping[str, str], body: bytes, files: tuple[str, ...] = ("file",),
                     max_parts: int = 64) -> list[Part]:
    """The parts of a ``multipart/form-data`` body (``files`` name the parts kept as bytes);
    InvalidRequest when it is not one (no boundary, a missing closing delimiter, bad part
    headers, an undecodable field, too many parts)."""
    try:
        reader = MultipartReader(headers, _reader_of(body))
        parts = []
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("nested multipart parts are not supported; send flat multipart/form-data")
            if len(parts) >= max_parts:
                raise InvalidRequest(f"the form has more than {max_parts} parts")
            name = part.name or ""
            value = await part.read(decode=False) if name in files else await part.text()
            parts.append(Part(name, part.filename, value))
        return parts
    except InvalidRequest:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the parser (or a decoder under it) raises, the body is the client's
        raise InvalidRequest(f"the body is not valid multipart/form-data ({type(exc).__name__}: {exc}); "
                             f"send a form with a 'file' part") from None
