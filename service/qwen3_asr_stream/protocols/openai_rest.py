"""OpenAI's REST transcription API over the session core's unary recognition.

    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format
                                    (json, text, verbose_json, srt, vtt, diarized_json: speaker-labelled
                                    segments), timestamp_granularities[],
                                    include[] (logprobs: with json, the transcript's tokens),
                                    stream (server-sent transcript.text.delta / transcript.text.done),
                                    key_terms[] (ours: key terms that steer decoding; prompt stays context)
    GET  /v1/models, /v1/models/{id}

The uploaded file (any container FFmpeg reads: flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav,
webm, as OpenAI lists) is decoded here by the codec layer (PyAV) to float32 samples at its
own rate, MP3 encoder delay and AAC priming removed; the core's AudioDecoder resamples 8-48 kHz (other rates are
brought to 16 kHz first). One segment per utterance the core found; word times come from
the shared aligner. Errors are OpenAI's body with the HTTP status of the one table in
``openai_common``.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from ..audio import SAMPLE_RATE
from ..audio.codecs import AudioTooLong, InvalidAudio
from ..audio.containers import decode_file as decode_audio_file
from ..audio.input import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioEncoding
from ..audio.files import to_mono_16k
from ..session.calls import Calls
from ..session.errors import InvalidRequest, MessageTooLarge, status_of
from ..session.recognize import recognize
from ..session.settings import settings_from
from ..session.types import Transcript
from .http_body import form_parts, read_body, refuse_upload
from .openai_common import (NOT_FOUND, PAYLOAD_TOO_LARGE, OpenAIError, error_body, error_for, logprobs_of,
                            model_for, speaker_segments, words_of)

BAD_REQUEST = error_for("INVALID_ARGUMENT")

FORMATS = ("json", "text", "verbose_json", "srt", "vtt", "diarized_json")
GRANULARITIES = ("word", "segment")
INCLUDES = ("logprobs",)
FORM_FIELDS_BYTES = 64 * 1024  # room for the form fields besides the file
PCM16_BYTES_PER_S = 16000 * 2  # the recording limit is counted as 16 kHz 16-bit mono, like Recognize's
MODEL_CREATED = 1_700_000_000  # a fixed "created" for /v1/models


class HttpError(InvalidRequest):
    """What the REST adapter itself refuses (the form, the file): OpenAI's body and status
    (an InvalidRequest to the core's call accounting)."""

    def __init__(self, message: str, error: OpenAIError = BAD_REQUEST, code: str | None = None,
                 param: str | None = None):
        super().__init__(message)
        self.error, self.code, self.param = error, code, param

    def response(self) -> web.Response:
        return web.json_response(error_body(str(self), self.error, code=self.code, param=self.param),
                                 status=self.error.http_status)


@dataclass(frozen=True)
class TranscriptionRequest:
    file: bytes
    filename: str
    model: str | None
    language: str | None
    prompt: str  # context for the model (OpenAI's prompt: style, spellings), never in the output
    response_format: str
    granularities: tuple[str, ...]
    stream: bool
    logprobs: bool = False  # include[]=logprobs
    key_terms: tuple[str, ...] = ()  # our extension key_terms[]: words decoding is steered toward (engine/bias.py)


# -- request -------------------------------------------------------------------------------------

def check_form_type(request: web.Request) -> None:
    """The request must be a form (checked before its body is read)."""
    if not request.content_type.startswith("multipart/"):
        raise HttpError("send multipart/form-data with a 'file' part (and 'model')", param="file")


async def read_form(headers, body: bytes, max_file_bytes: int) -> TranscriptionRequest:
    """The multipart form from the body read (``http_body``), with the file's size capped (413 beyond)."""
    fields: dict[str, list[str]] = {}
    file, filename, extra = None, "", 0
    for part in await form_parts(headers, body, files=("file",)):
        if part.name == "file":
            if len(part.value) > max_file_bytes:
                raise HttpError(f"the file is larger than this server's limit of {max_file_bytes} bytes; "
                                f"send a shorter recording or stream it over /v1/realtime", PAYLOAD_TOO_LARGE, param="file")
            file, filename = part.value, part.filename or ""
        else:
            extra += len(part.value)
            if extra > FORM_FIELDS_BYTES:
                raise HttpError("the form fields are too large", PAYLOAD_TOO_LARGE, param=part.name)
            fields.setdefault(part.name, []).append(part.value)
    if file is None:
        raise HttpError("the 'file' part is missing: upload the audio as multipart field 'file'", param="file")

    def one(name: str, default: str = "") -> str:
        return fields.get(name, [default])[-1].strip()

    response_format = one("response_format", "json") or "json"
    if response_format not in FORMATS:
        raise HttpError(f"response_format {response_format!r} is not supported; use one of {', '.join(FORMATS)}",
                        param="response_format")
    granularities = tuple(dict.fromkeys(fields.get("timestamp_granularities[]", []) +
                                        fields.get("timestamp_granularities", [])))
    for g in granularities:
        if g not in GRANULARITIES:
            raise HttpError(f"timestamp_granularities has {g!r}; use 'word' and/or 'segment'",
                            param="timestamp_granularities")
    if granularities and response_format != "verbose_json":
        raise HttpError("timestamp_granularities needs response_format=verbose_json", param="timestamp_granularities")
    include = tuple(dict.fromkeys(fields.get("include[]", []) + fields.get("include", [])))
    for value in include:
        if value not in INCLUDES:
            raise HttpError(f"include has {value!r}; this server offers {', '.join(INCLUDES)}", param="include")
    if include and response_format != "json":
        raise HttpError("include=logprobs needs response_format=json", param="include")
    for name in ("known_speaker_names[]", "known_speaker_references[]", "known_speaker_names",
                 "known_speaker_references"):
        if name in fields:
            raise HttpError("known speakers are not supported: diarized_json labels speakers A, B, ... in the "
                            "order they first speak", param=name.rstrip("[]"))
    stream = one("stream", "false").lower()
    if stream not in ("true", "false", ""):
        raise HttpError(f"stream must be true or false, got {stream!r}", param="stream")
    if stream == "true" and response_format not in ("json", "text"):
        raise HttpError(f"stream=true gives transcript.text events; it works with response_format json or text, "
                        f"not {response_format}", param="stream")
    return TranscriptionRequest(file=file, filename=filename, model=one("model") or None,
                                language=one("language") or None, prompt=one("prompt"),
                                response_format=response_format, granularities=granularities,
                                stream=stream == "true", logprobs="logprobs" in include,
                                key_terms=tuple(fields.get("key_terms[]", []) + fields.get("key_terms", [])))


def decode_file(data: bytes, max_seconds: float) -> tuple[bytes, int, int]:
    """An audio file in any container FFmpeg reads -> (float32 little-endian PCM, rate, channels)
    the core accepts. CPU work.

    Rates outside 8-48 kHz or more than 2 channels are brought to 16 kHz mono first.
    """
    try:
        samples, rate = decode_audio_file(data, max_seconds)
    except AudioTooLong as exc:
        raise HttpError(f"{exc} ({max_seconds:.0f} s)", PAYLOAD_TOO_LARGE, param="file") from None
    except InvalidAudio as exc:
        raise HttpError(str(exc), code="unsupported_file", param="file") from None
    if not (MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE and samples.shape[1] <= MAX_CHANNELS):
        samples, rate = to_mono_16k(samples, int(rate))[:, None], SAMPLE_RATE
    return np.ascontiguousarray(samples, "<f4").tobytes(), int(rate), samples.shape[1]


# -- response formats ---------------------------------------------------------------------------

def full_text(results: list[Transcript]) -> str:
    return " ".join(t.text.strip() for t in results if t.text.strip())


def compression_ratio(text: str) -> float:
    """UTF-8 bytes over zlib-compressed bytes, as Whisper measures repetitiveness."""
    data = text.encode()
    return len(data) / len(zlib.compress(data))


def segments_of(results: list[Transcript]) -> list[dict]:
    """One segment per utterance; fields we do not compute (seek, no_speech_prob) are left out."""
    spoken = [t for t in results if t.text.strip()]
    segments = []
    for i, t in enumerate(spoken):
        segment = {"id": i, "start": t.start_ms / 1000, "end": t.end_ms / 1000, "text": t.text.strip(),
                   "tokens": [token.id for token in t.tokens], "temperature": 0.0,
                   "compression_ratio": compression_ratio(t.text.strip())}
        if t.avg_logprob is not None:
            segment["avg_logprob"] = t.avg_logprob
        segments.append(segment)
    return segments


def all_logprobs(results: list[Transcript]) -> list[dict]:
    return logprobs_of([token for t in results for token in t.tokens])


def transcription_language(results: list[Transcript], asked: str | None) -> str:
    """The language a transcription response names: the first detected, else what was asked (lower case)."""
    for t in results:
        if t.language:
            return t.language.lower()
    return (asked or "").lower()


def timestamp(ms: int, separator: str) -> str:
    h, rest = divmod(int(ms), 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def srt(results: list[Transcript]) -> str:
    spoken = [t for t in results if t.text.strip()]
    return "".join(f"{i}\n{timestamp(t.start_ms, ',')} --> {timestamp(t.end_ms, ',')}\n{t.text.strip()}\n\n"
                   for i, t in enumerate(spoken, 1))


def vtt(results: list[Transcript]) -> str:
    spoken = [t for t in results if t.text.strip()]
    return "WEBVTT\n\n" + "".join(f"{timestamp(t.start_ms, '.')} --> {timestamp(t.end_ms, '.')}\n{t.text.strip()}\n\n"
                                  for t in spoken)


def usage(duration_ms: int) -> dict:
    return {"type": "duration", "seconds": round(duration_ms / 1000, 3)}


def body_of(req: TranscriptionRequest, results: list[Transcript], duration_ms: int) -> web.Response:
    text = full_text(results)
    if req.response_format == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    if req.response_format == "srt":
        return web.Response(text=srt(results), content_type="application/x-subrip")
    if req.response_format == "vtt":
        return web.Response(text=vtt(results), content_type="text/vtt")
    if req.response_format == "diarized_json":
        return web.json_response({"task": "transcribe", "duration": duration_ms / 1000, "text": text,
                                  "segments": speaker_segments(results), "usage": usage(duration_ms)})
    if req.response_format == "json":
        body = {"text": text, "usage": usage(duration_ms)}
        if req.logprobs:
            body["logprobs"] = all_logprobs(results)
        return web.json_response(body)
    body = {"task": "transcribe", "language": transcription_language(results, req.language),
            "duration": duration_ms / 1000, "text": text, "usage": usage(duration_ms)}
    if "segment" in req.granularities or not req.granularities:
        body["segments"] = segments_of(results)
    if "word" in req.granularities:
        body["words"] = words_of(results)
    return web.json_response(body)


async def stream_body(request: web.Request, results: list[Transcript], duration_ms: int,
                      logprobs: bool = False) -> web.StreamResponse:
    """Server-sent events: one transcript.text.delta per utterance, then transcript.text.done
    (with ``logprobs``: each delta's tokens and, on done, all of them)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    sent = ""
    for t in results:
        if t.text.strip():
            delta = (" " if sent else "") + t.text.strip()
            sent += delta
            event = {"type": "transcript.text.delta", "delta": delta, "start": t.start_ms / 1000,
                     "end": t.end_ms / 1000}
            if logprobs:
                event["logprobs"] = logprobs_of(t.tokens)
            await response.write(sse(event))
    done = {"type": "transcript.text.done", "text": sent, "usage": usage(duration_ms)}
    if logprobs:
        done["logprobs"] = all_logprobs(results)
    await response.write(sse(done))
    await response.write_eof()
    return response


def sse(event: dict) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


# -- handlers ------------------------------------------------------------------------------------

def status_response(exc: BaseException) -> web.Response:
    """A core error -> OpenAI's body with the status of the one table."""
    status = status_of(exc)
    error = error_for(status.code.name)
    if isinstance(exc, MessageTooLarge):
        error = PAYLOAD_TOO_LARGE
    return web.json_response(error_body(status.message, error), status=error.http_status)


class RestApi:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.backend = calls.backend

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/transcriptions", self.transcriptions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{model}", self.model)

    def _model_object(self, name: str) -> dict:
        return {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "qwen3-asr-stream"}

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._model_object(n) for n in self.backend.engines]})

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name not in self.backend.engines:
            return HttpError(f"the model {name!r} does not exist on this server", NOT_FOUND,
                             param="model").response()
        return web.json_response(self._model_object(name))

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        backend, limits = self.backend, self.backend.limits
        try:
            check_form_type(request)
            self.calls.check_open()
            # the upload is read before admission: a slow or stalled one holds no slot
            body = await read_body(request, limits.max_recognize_bytes + FORM_FIELDS_BYTES,
                                   limits.idle_timeout_s, "openai.rest")
        except HttpError as exc:
            return exc.response()
        except Exception as exc:  # noqa: BLE001 - the body's errors and a draining server
            return await refuse_upload(request, exc, status_response(exc))
        try:
            with self.calls.unary("openai.rest", request.remote or ""):
                req = await read_form(request.headers, body, limits.max_recognize_bytes)
                model = model_for(req.model, backend.engines, backend.default_model)
                if model is None:
                    raise HttpError(f"unknown model {req.model!r}; this server has {', '.join(backend.engines)} "
                                    f"(OpenAI model names select {backend.default_model})",
                                    code="model_not_found", param="model")
                words = "word" in req.granularities
                if words and backend.aligner is None:
                    raise HttpError("word timestamps need the forced aligner, which this server runs without",
                                    param="timestamp_granularities")
                pcm, rate, channels = await asyncio.to_thread(decode_file, req.file,
                                                              limits.max_recognize_bytes / PCM16_BYTES_PER_S)
                settings = settings_from(backend, encoding=AudioEncoding.FLOAT32, sample_rate=rate,
                                         channels=channels, model=model, language=req.language,
                                         context=req.prompt, word_times=words, key_terms=req.key_terms,
                                         diarization=req.response_format == "diarized_json")
                result = await recognize(pcm, settings, backend)
        except HttpError as exc:
            return exc.response()
        except Exception as exc:  # noqa: BLE001 - every failure is an OpenAI error body (the call logged it)
            return status_response(exc)
        if req.stream:
            return await stream_body(request, result.results, result.duration_ms, req.logprobs)
        return body_of(req, result.results, result.duration_ms)
