"""The HTTP surfaces against hostile or unlucky clients: stalled uploads, malformed forms.

A real server (gRPC + HTTP on one loop, the tiny checkpoint), raw sockets for what no
well-behaved client sends.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest

from qwen3_asr_stream.server.options import ServerOptions
from qwen3_asr_stream.testing.harness import ServerThread

from conftest import FORM_BOUNDARY, form_body, free_port, request_head, wav_bytes, white_noise

pytest.importorskip("webrtcvad")

async def post_form(port: int, wav: bytes) -> tuple[int, dict]:
    data = aiohttp.FormData()
    data.add_field("file", wav, filename="a.wav")
    data.add_field("model", "whisper-1")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions", data=data) as r:
            return r.status, await r.json()


@pytest.fixture
def small_server(engine):
    options = ServerOptions(port=0, http_port=free_port(), max_streams=2, idle_timeout_s=2.0)
    with ServerThread(options, {"tiny": engine}) as server:
        yield server


def test_stalled_uploads_hold_no_slot_and_end_within_the_idle_timeout(small_server, caplog):
    """More stalled uploads than --max-streams: a normal request is served meanwhile, each stalled
    one gets 408 within the idle timeout, one that disconnects is logged as a cancel."""
    caplog.set_level(logging.INFO)
    server, port = small_server, small_server.server.http_port
    idle = server.options.idle_timeout_s
    wav = wav_bytes(white_noise(1.0))
    body = form_body(wav)

    async def stalled(part: bytes):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_head(port, len(body)) + part)
        await writer.drain()
        return reader, writer

    async def main():
        started = time.monotonic()
        holders = [await stalled(body[:len(body) // 3]) for _ in range(server.options.max_streams + 2)]
        quitter = await stalled(body[:len(body) // 3])
        await asyncio.sleep(0.3)
        quitter[1].close()  # goes away mid-upload
        status, answer = await post_form(port, wav)  # served while the others stall
        served_after = time.monotonic() - started
        ends = []
        for reader, writer in holders:
            head = await asyncio.wait_for(reader.read(), idle + 30)
            ends.append((head.split(b"\r\n", 1)[0], time.monotonic() - started))
            writer.close()
        return status, answer, served_after, ends

    status, answer, served_after, ends = asyncio.run(main())
    assert status == 200 and "text" in answer, answer
    for line, at in ends:
        assert line == b"HTTP/1.1 408 Request Timeout", line
        assert at < 3 * idle + 5  # within the idle timeout (plus a loaded machine's slack), not open-ended
    server.run(lambda: asyncio.sleep(0.2))  # the server logged the quitter meanwhile
    lines = [r for r in caplog.records if r.name.startswith("qwen3_asr_stream")]
    assert not [r for r in lines if r.exc_info or r.levelno >= logging.ERROR], [r.getMessage() for r in lines]
    uploads = [r.getMessage() for r in lines if r.getMessage().startswith("upload ")]
    assert sum("status=CANCELLED" in m for m in uploads) == 1, uploads
    assert sum("status=DEADLINE_EXCEEDED" in m for m in uploads) == len(ends), uploads
    assert not any("INTERNAL" in r.getMessage() for r in lines)


def test_an_upload_over_the_limit_is_refused_before_it_is_read(small_server):
    port = small_server.server.http_port
    limit = small_server.options.max_recognize_bytes

    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request_head(port, 10 * limit))  # declares a body it never sends
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        body = await asyncio.wait_for(reader.readexactly(length), 30)
        writer.close()
        return head, body

    head, body = asyncio.run(main())
    assert head.startswith(b"HTTP/1.1 413") and b"payload_too_large" in body, head + body


def raw_post(port: int, body: bytes, content_type: str, extra: str = "", path: str = "/v1/audio/transcriptions"):
    """One raw HTTP request; (status, body as bytes)."""
    async def main():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
                      f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n").encode() + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        return answer

    answer = asyncio.run(main())
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), rest


def field(name: str, value: bytes, headers: str = "") -> bytes:
    return (f"--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n{headers}\r\n").encode() + value + b"\r\n"


def test_malformed_forms_are_400_in_one_log_line(small_server, caplog):
    """What the multipart parser (or a decoder under it) rejects is the client's 400, never a 500
    with a traceback."""
    caplog.set_level(logging.INFO)
    port = small_server.server.http_port
    wav = wav_bytes(white_noise(0.5))
    form = f"multipart/form-data; boundary={FORM_BOUNDARY}"
    end = f"--{FORM_BOUNDARY}--\r\n".encode()
    file_part = field("file", wav, "Content-Type: audio/wav\r\n").replace(b'name="file"', b'name="file"; filename="a.wav"')
    cases = {
        "the boundary never appears": (b"x" * 2000, form),
        "no boundary parameter": (form_body(wav), "multipart/form-data"),
        "no closing delimiter": (field("model", b"whisper-1") + file_part[:-2], form),
        "an unknown charset": (field("model", b"whisper-1", "Content-Type: text/plain; charset=x-no-such\r\n")
                               + file_part + end, form),
        "a field that is not UTF-8": (field("language", b"\xff\xfe\xfa") + file_part + end, form),
        "a gzip field that is not gzip": (field("model", b"plain", "Content-Encoding: gzip\r\n") + file_part + end, form),
        "a part header without a colon": (f"--{FORM_BOUNDARY}\r\nno colon here\r\n\r\nx\r\n".encode() + end, form),
    }
    answers = {name: raw_post(port, body, content_type) for name, (body, content_type) in cases.items()}
    for name, (status, body) in answers.items():
        assert status == 400, (name, status, body)
        assert b'"invalid_request_error"' in body, (name, body)
    lines = [r for r in caplog.records if r.name.startswith("qwen3_asr_stream")]
    assert not [r for r in lines if r.exc_info or r.levelno >= logging.WARNING], [r.getMessage() for r in lines]
    assert sum("status=INVALID_ARGUMENT" in r.getMessage() for r in lines) == len(cases)


def test_other_http_paths_do_not_answer_500(small_server, caplog):
    """A sweep of the HTTP surface with what a library could choke on: none is a 500."""
    caplog.set_level(logging.INFO)
    port = small_server.server.http_port
    base = f"http://127.0.0.1:{port}"

    async def main():
        out = {}
        async with aiohttp.ClientSession() as http:
            for path in ("/v1/models/%ff%fe", "/v1/models/" + "x" * 5000, "/web/..%2f..%2fsecret", "/web/%00",
                         "/v1/realtime?intent=%ff", "/v1/realtime?intent=transcription&intent=x", "/readyz?x=%ff"):
                async with http.get(base + path) as r:
                    out[path] = r.status
            gzip_headers = {"Content-Encoding": "gzip", "Content-Type": f"multipart/form-data; boundary={FORM_BOUNDARY}"}
            async with http.post(base + "/v1/audio/transcriptions", data=b"not gzip at all", headers=gzip_headers) as r:
                out["gzip body that is not gzip"] = r.status
            async with http.post(base + "/v1/audio/transcriptions", data=b"x",
                                 headers={"Content-Type": "multipart/form-data; boundary=\"unterminated"}) as r:
                out["quoted boundary never closed"] = r.status
        return out

    statuses = asyncio.run(main())
    assert all(s < 500 for s in statuses.values()), statuses
    lines = [r for r in caplog.records if r.name.startswith("qwen3_asr_stream") or r.name.startswith("aiohttp")]
    assert not [r for r in lines if r.exc_info or r.levelno >= logging.ERROR], [r.getMessage() for r in lines]
