"""The nvidia.riva.asr.RivaSpeechRecognition servicer: Riva's messages <-> the session core.

The servicer base and the messages are the generated code nvidia-riva-client ships.
Admission, limits, the idle watchdog, drain, result order and finals exactly once
are the core's (``session.calls``, ``session.core``); the call's shape and the status
table are shared with asr.v1 (``protocols.grpc_stream``). What is Riva's lives here: the first request carries
the configuration, ``runtime_config force_eou`` ends the utterance, a file's WAV
header is read and skipped, the request id is echoed, and speech events (which
Riva has no message for) are not sent.
"""

from __future__ import annotations

from riva.client.proto import riva_asr_pb2 as rasr
from riva.client.proto import riva_asr_pb2_grpc as rasr_grpc

from ...audio.input import AudioFormat
from ...session.calls import Calls, Control
from ...session.errors import InvalidRequest
from ...session.recognize import recognize
from ...session.settings import settings_from
from ...session.types import RecognitionSettings, Transcript
from ...text.transcript import SUPPORTED_LANGUAGES
from ..grpc_stream import abort_with, check_recognize_size, first_request, serve_stream
from .convert import (WavHeader, check_header, config_kwargs, force_eou, model_configs, model_name,
                      recognize_response, streaming_response, wav_header)

PROTOCOL = "riva.asr"
SERVICE_NAME = rasr.DESCRIPTOR.services_by_name["RivaSpeechRecognition"].full_name


async def _inputs(requests, audio: AudioFormat):
    """Riva requests after the first -> audio bytes and Control.FINALIZE for the session.

    A request may carry audio and ``force_eou`` together: its audio belongs to the
    utterance that ends. The first audio may start with the file's WAV header.
    """
    first_audio = True
    async for request in requests:
        kind = request.WhichOneof("streaming_request")
        if kind == "streaming_config":
            raise InvalidRequest("streaming_config is allowed only in the first request")
        finalize = force_eou(request)
        if kind == "audio_content":
            data = request.audio_content
            if first_audio and data and audio.encoding.raw:  # a container's own header is the decoder's
                first_audio = False
                header = wav_header(data)
                if header is not None:
                    check_header(header, audio)
                    data = data[header.data_offset:]
            yield data
        elif not finalize:
            raise InvalidRequest("empty request: set audio_content or runtime_config force_eou "
                                 "(and streaming_config in the first request only)")
        if finalize:
            yield Control.FINALIZE


class RivaSpeechRecognitionServicer(rasr_grpc.RivaSpeechRecognitionServicer):
    def __init__(self, calls: Calls, any_model: bool = False) -> None:
        self.calls = calls
        self.backend = calls.backend
        self.limits = calls.backend.limits
        self.any_model = any_model  # a model this server does not have gets the default one

    def _settings(self, config: rasr.RecognitionConfig, *, interim_results: bool = False,
                  header: WavHeader | None = None) -> RecognitionSettings:
        model = model_name(config.model, self.backend.engines, self.any_model)
        return settings_from(self.backend, model=model, interim_results=interim_results,
                             **config_kwargs(config, self.limits.endpointing, header=header))

    async def StreamingRecognize(self, requests, context):
        async for response in serve_stream(self.calls, PROTOCOL, requests, context, self._start):
            yield response

    async def _start(self, requests):
        first = await first_request(requests)
        force_eou(first)  # checks its keys; there is no utterance to end yet
        streaming = first.streaming_config
        settings = self._settings(streaming.config, interim_results=streaming.interim_results)

        def response_of(item):  # Riva has no message for speech events
            return streaming_response(item, first.id.value) if isinstance(item, Transcript) else None

        return settings, _inputs(requests, settings.audio), response_of

    async def Recognize(self, request, context):
        try:
            with self.calls.unary(PROTOCOL, context.peer()):
                audio = request.audio
                header = wav_header(audio)
                settings = self._settings(request.config, header=header)
                if header is not None:
                    audio = audio[header.data_offset : header.data_end]
                check_recognize_size(audio, self.limits.max_recognize_bytes)
                result = await recognize(audio, settings, self.backend)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            await abort_with(context, exc)
        return recognize_response(result.results, request.id.value)

    async def GetRivaSpeechRecognitionConfig(self, request, context):
        return model_configs(self.backend.engines, self.backend.default_model, SUPPORTED_LANGUAGES,
                             word_times=self.backend.aligner is not None, model_name=request.model_name)


def add_to_server(calls: Calls, server, any_model: bool = False) -> str:
    """Serve the Riva API on ``server`` beside asr.v1; returns its service name (for reflection)."""
    rasr_grpc.add_RivaSpeechRecognitionServicer_to_server(RivaSpeechRecognitionServicer(calls, any_model), server)
    return SERVICE_NAME
