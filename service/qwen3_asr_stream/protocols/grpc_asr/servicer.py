"""The asr.v1.SpeechRecognition servicer: protobuf <-> the session core.

Admission, limits, the idle watchdog, drain and the call log are the core's
(``session.calls``); recognition is the session's; what every gRPC protocol
shares (the first request, read-before-reject, the status table) is in
``protocols.grpc_stream``. Here: asr.v1's messages.
"""

from __future__ import annotations

import time

from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc

from ...audio.input import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from ...session.calls import Calls, Control, SetKeyTerms
from ...session.errors import InvalidRequest
from ...session.recognize import recognize
from ...session.settings import language_choices
from ...text.transcript import SUPPORTED_LANGUAGES
from ..grpc_stream import abort_with, check_recognize_size, first_request, serve_stream
from .convert import ENCODINGS, endpointing_proto, response_proto, result_proto, settings_of

PROTOCOL = "asr.v1"


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
        elif kind == "key_terms":
            yield SetKeyTerms(tuple(request.key_terms.terms))
        elif kind == "streaming_config":
            raise InvalidRequest("streaming_config is allowed only in the first request")
        else:
            raise InvalidRequest("empty request: set audio_content, control, key_terms or (first) streaming_config")


class SpeechRecognitionServicer(asr_pb2_grpc.SpeechRecognitionServicer):
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.backend = calls.backend
        self.limits = calls.backend.limits

    async def StreamingRecognize(self, requests, context):
        async for response in serve_stream(self.calls, PROTOCOL, requests, context, self._start):
            yield response

    async def _start(self, requests):
        first = await first_request(requests, "audio and control come")
        settings = settings_of(self.backend, first.streaming_config.config, first.streaming_config)
        return settings, _inputs(requests), response_proto

    async def Recognize(self, request, context):
        try:
            with self.calls.unary(PROTOCOL, context.peer()):
                settings = settings_of(self.backend, request.config)
                check_recognize_size(request.audio, self.limits.max_recognize_bytes)
                started = time.monotonic()
                result = await recognize(request.audio, settings, self.backend)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            await abort_with(context, exc)
        return asr_pb2.RecognizeResponse(
            results=[result_proto(t) for t in result.results], audio_duration_ms=result.duration_ms,
            processing_time_ms=round(1000 * (time.monotonic() - started)))

    async def GetSpeechRecognitionConfig(self, request, context):
        limits = self.limits
        word_times = self.backend.aligner is not None
        return asr_pb2.GetSpeechRecognitionConfigResponse(
            models=[asr_pb2.ModelInfo(name=name, languages=SUPPORTED_LANGUAGES, word_time_offsets=word_times,
                                      is_default=name == self.backend.default_model)
                    for name in self.backend.engines],
            languages=language_choices(),
            min_sample_rate_hertz=MIN_SAMPLE_RATE, max_sample_rate_hertz=MAX_SAMPLE_RATE,
            encodings=sorted(v for v in ENCODINGS if v), channel_counts=list(range(1, MAX_CHANNELS + 1)),
            limits=asr_pb2.Limits(max_stream_seconds=limits.max_stream_seconds,
                                  max_message_bytes=limits.max_message_bytes, max_streams=limits.max_streams,
                                  max_recognize_bytes=limits.max_recognize_bytes),
            default_endpointing=endpointing_proto(limits.endpointing),
            default_update_interval_ms=limits.update_interval_ms)
