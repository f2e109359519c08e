"""The asr.v1.SpeechRecognition servicer: protobuf <-> the session core, statuses through one table.

Admission, limits, the idle watchdog, drain and the call log are the core's
(``session.calls``); recognition is the session's. What is gRPC's own lives
here: the first request carries the configuration, and a call that ends with an
error about what the client is sending reads the client's in-flight requests
for a moment before its status (see ``read_before_reject``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc

from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc

from ...audio.input import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from ...session.calls import Control
from ...session.errors import Code, IdleTimeout, InvalidRequest, MessageTooLarge, Status, is_expected, status_of
from ...session.recognize import recognize
from ...session.settings import language_choices
from ...session.types import Backend, RecognitionSettings
from ...transcript import SUPPORTED_LANGUAGES
from .convert import endpointing_proto, response_proto, result_proto, settings_of

log = logging.getLogger(__name__)

PROTOCOL = "asr.v1"
ERROR_DRAIN_S = 1.0  # how long a refused or failed stream reads the client's requests before its status
# Statuses after which the client is likely still sending (see read_before_reject).
READ_BEFORE_REJECT = (Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED, Code.OUT_OF_RANGE, Code.UNAVAILABLE,
                      Code.UNAUTHENTICATED)


def grpc_code(code: Code) -> grpc.StatusCode:
    """The one table of this protocol: the core's codes are named as gRPC's."""
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


async def _inputs(requests):
    """asr.v1 requests after the first -> audio bytes / Control for the session."""
    async for request in requests:
        kind = request.WhichOneof("streaming_request")
        if kind == "audio_content":
            yield request.audio_content
        elif kind == "control":
            if request.control.kind != asr_pb2.Control.FINALIZE:
                raise InvalidRequest(f"unknown control kind {request.control.kind}; use FINALIZE")
            yield Control.FINALIZE
        elif kind == "streaming_config":
            raise InvalidRequest("streaming_config is allowed only in the first request")
        else:
            raise InvalidRequest("empty request: set audio_content, control or (first) streaming_config")


class SpeechRecognitionServicer(asr_pb2_grpc.SpeechRecognitionServicer):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.options = backend.options

    async def StreamingRecognize(self, requests, context):
        peer = context.peer()  # now: an ended call can crash grpc.aio
        reader = None
        try:
            with self.backend.calls.stream(PROTOCOL, peer) as call:
                try:
                    session = call.open(await self._first_settings(requests))
                    reader = asyncio.create_task(call.pump(_inputs(requests)))
                    while not isinstance(item := await session.next(), Status):
                        yield response_proto(item)
                    status = item
                except Exception as exc:  # noqa: BLE001 - every failure becomes a status
                    status = status_of(exc)
                    if not is_expected(exc):
                        log.exception("stream %d failed", call.id)
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

    async def _first_settings(self, requests) -> RecognitionSettings:
        idle = self.options.idle_timeout_s
        try:
            first = await asyncio.wait_for(anext(requests), idle)
        except StopAsyncIteration:
            raise InvalidRequest("the stream ended before its configuration; send streaming_config first") from None
        except asyncio.TimeoutError:
            raise IdleTimeout(f"no configuration within {idle:g} s") from None
        if first.WhichOneof("streaming_request") != "streaming_config":
            raise InvalidRequest("the first request must carry streaming_config; audio and control come after it")
        return settings_of(self.backend, first.streaming_config.config, first.streaming_config)

    async def Recognize(self, request, context):
        try:
            with self.backend.calls.unary(PROTOCOL, context.peer()):
                settings = settings_of(self.backend, request.config)
                if len(request.audio) > self.options.max_recognize_bytes:
                    raise MessageTooLarge(f"audio of {len(request.audio)} bytes exceeds the Recognize limit of "
                                          f"{self.options.max_recognize_bytes}; stream it with StreamingRecognize")
                started = time.monotonic()
                result = await recognize(request.audio, settings, self.backend)
        except Exception as exc:  # noqa: BLE001
            status = status_of(exc)
            await context.abort(grpc_code(status.code), status.message)
        return asr_pb2.RecognizeResponse(
            results=[result_proto(t) for t in result.results], audio_duration_ms=result.duration_ms,
            processing_time_ms=round(1000 * (time.monotonic() - started)))

    async def GetSpeechRecognitionConfig(self, request, context):
        options = self.options
        word_times = self.backend.aligner is not None
        return asr_pb2.GetSpeechRecognitionConfigResponse(
            models=[asr_pb2.ModelInfo(name=name, languages=SUPPORTED_LANGUAGES, word_time_offsets=word_times,
                                      is_default=name == self.backend.default_model)
                    for name in self.backend.engines],
            languages=language_choices(),
            min_sample_rate_hertz=MIN_SAMPLE_RATE, max_sample_rate_hertz=MAX_SAMPLE_RATE,
            encodings=[asr_pb2.LINEAR_PCM, asr_pb2.FLOAT32], channel_counts=list(range(1, MAX_CHANNELS + 1)),
            limits=asr_pb2.Limits(max_stream_seconds=options.max_stream_seconds,
                                  max_message_bytes=options.max_message_bytes, max_streams=options.max_streams,
                                  max_recognize_bytes=options.max_recognize_bytes),
            default_endpointing=endpointing_proto(options.endpointing),
            default_update_interval_ms=options.update_interval_ms)
