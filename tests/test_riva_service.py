"""nvidia-riva-client, unchanged, against our server: streaming, offline, the model listing, TLS and
token, force_eou, model names, and the bad-input list with the same statuses as asr.v1.

The tiny model's text is random: these tests check the contract (results, order, offsets, words,
statuses), not the words recognized.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

import riva.client
from riva.client.proto import riva_asr_pb2 as rasr
from riva.client.proto import riva_asr_pb2_grpc as rasr_grpc
from riva.client.proto import riva_audio_pb2 as raudio

from qwen3_asr_client.proto import asr_pb2
from conftest import (BOUNDARY_TOLERANCE_MS, asr_audio, asr_config, call_status_sync, compose, riva_recognize,
                      self_signed, write_wav)

from qwen3_asr_stream.audio.vad import EndpointingOptions  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

CODE = grpc.StatusCode
EP = EndpointingOptions()
# test_server_errors.py's limits, with room for the 8 s test file in Recognize.
OPTIONS = ServerOptions(port=0, max_streams=8, idle_timeout_s=2.0, max_recognize_bytes=1 << 20, max_queued_responses=8)


@pytest.fixture(scope="module")
def server(engine, aligner):
    with ServerThread(OPTIONS, {"tiny": engine}, aligner) as server:
        yield server


@pytest.fixture(scope="module")
def speech(phrases):
    a, b, rate = phrases
    return compose([a, b], rate)


@pytest.fixture(scope="module")
def speech_wav(speech, tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("riva") / "speech.wav", speech.pcm, speech.rate)


def streaming_config(wav, **custom) -> rasr.StreamingRecognitionConfig:
    """What transcribe_file.py builds for a file."""
    config = riva.client.StreamingRecognitionConfig(
        config=riva.client.RecognitionConfig(
            encoding=riva.client.AudioEncoding.LINEAR_PCM, language_code="en-US", max_alternatives=1,
            enable_automatic_punctuation=True, verbatim_transcripts=True, enable_word_time_offsets=True),
        interim_results=True)
    riva.client.add_audio_file_specs_to_config(config, wav)
    riva.client.add_word_boosting_to_config(config, ["Qwen"], 4.0)
    riva.client.add_endpoint_parameters_to_config(config, -1, -1.0, 600, -1, -1.0, -1.0)
    riva.client.add_custom_configuration_to_config(config, ",".join(f"{k}:{v}" for k, v in custom.items()))
    return config


def check_words_inside_speech(result, span) -> None:
    first, last = span
    words = result.alternatives[0].words
    assert words, "no word offsets in a final"
    for word in words:
        assert first - EP.pre_roll_ms - BOUNDARY_TOLERANCE_MS <= word.start_time <= word.end_time
        assert word.end_time <= last + EP.hangover_ms + BOUNDARY_TOLERANCE_MS, (word, span)
        assert word.language_code == "en-US"
    assert [w.start_time for w in words] == sorted(w.start_time for w in words)


def test_riva_client_streams_a_file_in_real_time(server, speech, speech_wav):
    asr = riva.client.ASRService(riva.client.Auth(uri=server.address))
    config = streaming_config(speech_wav, update_interval_ms=500)
    started = time.monotonic()
    with riva.client.AudioChunkFileIterator(str(speech_wav), 1600, riva.client.sleep_audio_length) as chunks:
        responses = list(asr.streaming_response_generator(chunks, config))
    assert time.monotonic() - started >= 0.9 * len(speech.pcm) / speech.rate  # paced in real time

    assert responses and all(len(r.results) == 1 for r in responses)  # one result per response
    results = [r.results[0] for r in responses]
    finals = [r for r in results if r.is_final]
    assert len(finals) == 2
    interims = [r for r in results[: results.index(finals[0])] if not r.is_final]
    assert interims, "no interim result before the first final"
    # An interim's stability is the share of its text already stable (1 when all of it is).
    assert all(0 <= r.stability <= 1 for r in interims) and any(r.stability < 1 for r in interims)
    assert all(r.stability == 1 for r in finals)
    spoken = [r for r in interims if r.alternatives[0].transcript.strip()]
    assert spoken and all(0 < r.alternatives[0].confidence <= 1 for r in spoken)
    for final, span in zip(finals, speech.spans):
        assert list(final.alternatives[0].language_code) == ["en-US"]
        check_words_inside_speech(final, span)
        # Confidence on the alternative and on each word (a real probability of random text: > 0).
        assert 0 < final.alternatives[0].confidence <= 1
        assert all(0 < w.confidence <= 1 for w in final.alternatives[0].words)
    processed = [r.audio_processed for r in results]
    assert processed == sorted(processed) and processed[-1] <= len(speech.pcm) / speech.rate + 0.05


def test_riva_client_offline_recognize_of_a_file(server, speech, speech_wav):
    asr = riva.client.ASRService(riva.client.Auth(uri=server.address))
    # As Pipecat's NvidiaSegmentedSTTService and transcribe_file_offline.py send it: the file's
    # bytes with their WAV header, no sample rate in the configuration.
    config = riva.client.RecognitionConfig(language_code="en-US", max_alternatives=1,
                                           enable_automatic_punctuation=True, enable_word_time_offsets=True)
    response = asr.offline_recognize(speech_wav.read_bytes(), config)
    assert len(response.results) == 2
    for result, span in zip(response.results, speech.spans):
        assert result.alternatives[0].transcript
        check_words_inside_speech(result, span)
    assert response.results[-1].audio_processed <= len(speech.pcm) / speech.rate + 0.05


def list_models(asr: riva.client.ASRService) -> dict:
    """What transcribe_file.py --list-models computes and prints, with the same call."""
    asr_models = dict()
    config_response = asr.stub.GetRivaSpeechRecognitionConfig(riva.client.proto.riva_asr_pb2.RivaSpeechRecognitionConfigRequest())
    for model_config in config_response.model_config:
        if model_config.parameters["type"] == "online":
            language_code = model_config.parameters['language_code']
            model = {"model": [model_config.model_name]}
            if language_code in asr_models:
                asr_models[language_code].append(model)
            else:
                asr_models[language_code] = [model]
    return dict(sorted(asr_models.items()))


def test_model_listing_of_transcribe_file_list_models(server):
    asr = riva.client.ASRService(riva.client.Auth(uri=server.address))
    assert list_models(asr) == {"multi": [{"model": ["tiny"]}]}
    offline = [c for c in asr.stub.GetRivaSpeechRecognitionConfig(rasr.RivaSpeechRecognitionConfigRequest()).model_config
               if c.parameters["type"] == "offline"]
    assert [c.model_name for c in offline] == ["tiny"] and "en-US" in offline[0].parameters["language_codes"]


def test_tls_and_bearer_token(engine, tmp_path, phrases):
    a, _, rate = phrases
    speech = compose([a], rate, tail_s=0.5)
    wav = write_wav(tmp_path / "a.wav", speech.pcm, rate)
    cert, key = self_signed(tmp_path)
    options = ServerOptions(port=0, tls_cert=cert, tls_key=key, auth_token="s3cret")
    with ServerThread(options, {"tiny": engine}) as server:
        uri = f"localhost:{server.port}"

        def service(token):
            metadata = [["authorization", f"Bearer {token}"]] if token else None
            return riva.client.ASRService(riva.client.Auth(ssl_root_cert=cert, use_ssl=True, uri=uri,
                                                           metadata_args=metadata))

        asr = service("s3cret")
        assert list_models(asr) == {"multi": [{"model": ["tiny"]}]}  # the token travels with the TLS credentials
        with riva.client.AudioChunkFileIterator(str(wav), 1600) as chunks:
            responses = list(asr.streaming_response_generator(chunks, streaming_config(wav)))
        assert [r.results[0].is_final for r in responses].count(True) == 1
        for token in (None, "wrong"):
            denied = service(token)
            for call in (lambda: list_models(denied),
                         lambda: denied.offline_recognize(wav.read_bytes(), riva.client.RecognitionConfig()),
                         lambda: list(denied.streaming_response_generator(iter([b"\0" * 3200]), streaming_config(wav)))):
                with pytest.raises(grpc.RpcError) as error:
                    call()
                assert error.value.code() == CODE.UNAUTHENTICATED


# -- the raw stub: what the client's helpers do not send ----------------------------------------


def riva_request(**fields) -> rasr.StreamingRecognizeRequest:
    custom = fields.pop("custom_configuration", {})
    config = rasr.RecognitionConfig(**{"encoding": raudio.LINEAR_PCM, "sample_rate_hertz": 16000, **fields})
    config.custom_configuration.update(custom)
    return rasr.StreamingRecognizeRequest(streaming_config=rasr.StreamingRecognitionConfig(config=config))


def riva_audio(data: bytes) -> rasr.StreamingRecognizeRequest:
    return rasr.StreamingRecognizeRequest(audio_content=data)


def riva_call(address: str, requests, metadata=()) -> tuple[grpc.StatusCode, str, list]:
    return call_status_sync(address, requests, metadata, stub=rasr_grpc.RivaSpeechRecognitionStub)


def test_force_eou_ends_the_utterance_and_the_request_id_comes_back(server, phrases):
    """runtime_config force_eou (nvidia-riva-client 2.28) gives the final while the stream stays open."""
    a, _, rate = phrases
    pcm = a[: len(a) * 2 // 3].tobytes()  # speech that has not ended
    got_final = threading.Event()

    def requests():
        first = riva_request(sample_rate_hertz=rate, language_code="en-US", enable_word_time_offsets=True)
        first.id.value = "call-42"
        yield first
        step = rate // 10 * 2
        for i in range(0, len(pcm), step):
            yield riva_audio(pcm[i : i + step])
            time.sleep(0.01)
        yield rasr.StreamingRecognizeRequest(runtime_config={"force_eou": "true"})
        assert got_final.wait(30), "no final after force_eou"
        yield riva_audio(b"\0" * 3200)  # the stream goes on after the forced final

    with grpc.insecure_channel(server.address) as channel:
        call = rasr_grpc.RivaSpeechRecognitionStub(channel).StreamingRecognize(requests())
        responses = []
        for response in call:
            responses.append(response)
            if response.results[0].is_final:
                got_final.set()
    assert call.code() == CODE.OK
    assert [r.results[0].is_final for r in responses] == [True]
    assert {r.id.value for r in responses} == {"call-42"}
    assert responses[0].results[0].alternatives[0].words


def test_model_names(server, engine, phrases):
    a, _, rate = phrases
    data = a[:rate].tobytes()
    parakeet = "parakeet-1.1b-en-US-asr-streaming-silero-vad-sortformer"  # LiveKit's default
    for model in ("", "tiny"):  # Pipecat sends ""
        assert riva_recognize(server.address, data, sample_rate_hertz=rate, model=model) == CODE.OK
    code, details, _ = riva_call(server.address, [riva_request(model=parakeet), riva_audio(b"\0" * 3200)])
    assert code == CODE.INVALID_ARGUMENT and "unknown model" in details and "tiny" in details
    with ServerThread(ServerOptions(port=0, riva_any_model=True), {"tiny": engine}) as lenient:
        assert riva_recognize(lenient.address, data, sample_rate_hertz=rate, model=parakeet) == CODE.OK
        code, _, _ = riva_call(lenient.address, [riva_request(model=parakeet), riva_audio(b"\0" * 3200)])
        assert code == CODE.OK



def test_serve_flag_riva_any_model():
    from qwen3_asr_stream.cli import build_parser
    from qwen3_asr_stream.server.cli import server_options

    assert server_options(build_parser().parse_args(["serve", "--riva-any-model"])).riva_any_model is True
    assert server_options(build_parser().parse_args(["serve"])).riva_any_model is False
    with pytest.raises(ValueError, match="riva_any_model must be a bool"):
        ServerOptions(riva_any_model="yes")

# -- the bad-input list: the same statuses through both protocols ----------------------------------

ASR_CONFIG_ERRORS = {  # case -> (asr.v1 config fields, Riva config fields)
    "unknown encoding": ({"encoding": 99}, {"encoding": 7}),
    "negative sample rate": ({"sample_rate_hertz": -1}, {"sample_rate_hertz": -1}),
    "1 MHz sample rate": ({"sample_rate_hertz": 1_000_000}, {"sample_rate_hertz": 1_000_000}),
    "sample rate 0": ({"sample_rate_hertz": 0}, {"sample_rate_hertz": 0}),
    "three channels": ({"audio_channel_count": 3}, {"audio_channel_count": 3}),
    "unknown language": ({"language_code": "Klingon"}, {"language_code": "Klingon"}),
    "unknown model": ({"model": "no-such-model"}, {"model": "no-such-model"}),
    "context too long": ({"context": "x" * 5000}, {"custom_configuration": {"context": "x" * 5000}}),
}


@pytest.mark.parametrize("case", sorted(ASR_CONFIG_ERRORS))
def test_bad_configuration_same_status_as_asr_v1(server, case):
    asr_fields, riva_fields = ASR_CONFIG_ERRORS[case]
    asr_code, asr_details, _ = call_status_sync(server.address, [asr_config(**asr_fields), asr_audio(b"\0" * 3200)])
    code, details, responses = riva_call(server.address, [riva_request(**riva_fields), riva_audio(b"\0" * 3200)])
    assert (code, responses) == (asr_code, []) == (CODE.INVALID_ARGUMENT, []), (details, asr_details)


def asr_control_finalize():
    return asr_pb2.StreamingRecognizeRequest(control=asr_pb2.Control(kind=asr_pb2.Control.FINALIZE))


PROTOCOL_ERRORS = {  # case -> (asr.v1 requests, Riva requests, status, words in the Riva details)
    "audio before config": ([asr_audio(b"\0" * 320)], [riva_audio(b"\0" * 320)], CODE.INVALID_ARGUMENT,
                            "first request must carry streaming_config"),
    "config twice": ([asr_config(), asr_audio(b"\0" * 320), asr_config()],
                     [riva_request(), riva_audio(b"\0" * 320), riva_request()], CODE.INVALID_ARGUMENT,
                     "only in the first request"),
    "empty request": ([asr_config(), asr_pb2.StreamingRecognizeRequest()],
                      [riva_request(), rasr.StreamingRecognizeRequest()], CODE.INVALID_ARGUMENT, "empty request"),
    "no config at all": ([], [], CODE.INVALID_ARGUMENT, "before its configuration"),
    "partial sample at half-close": ([asr_config(), asr_audio(b"\0" * 3201)], [riva_request(), riva_audio(b"\0" * 3201)],
                                     CODE.INVALID_ARGUMENT, "whole frame"),
    "oversize message": ([asr_config(), asr_audio(b"\0" * (OPTIONS.max_message_bytes + 2))],
                         [riva_request(), riva_audio(b"\0" * (OPTIONS.max_message_bytes + 2))],
                         CODE.RESOURCE_EXHAUSTED, "exceeds the limit"),
    "over gRPC's receive limit": ([asr_config(), asr_audio(b"\0" * (OPTIONS.receive_limit_bytes + 2))],
                                  [riva_request(), riva_audio(b"\0" * (OPTIONS.receive_limit_bytes + 2))],
                                  CODE.RESOURCE_EXHAUSTED, ""),
    "finalize then audio": ([asr_config(), asr_control_finalize(), asr_audio(b"\0" * 3200)],
                            [riva_request(), rasr.StreamingRecognizeRequest(runtime_config={"force_eou": "true"}),
                             riva_audio(b"\0" * 3200)], CODE.OK, ""),
}


@pytest.mark.parametrize("case", sorted(PROTOCOL_ERRORS))
def test_protocol_errors_same_status_as_asr_v1(server, case):
    asr_requests, riva_requests, expected, words = PROTOCOL_ERRORS[case]
    asr_code, _, _ = call_status_sync(server.address, asr_requests)
    code, details, _ = riva_call(server.address, riva_requests)
    assert code == asr_code == expected, details
    assert words in details


def test_idle_stream_same_status_as_asr_v1(server):
    def idle(first):
        yield first
        time.sleep(OPTIONS.idle_timeout_s + 1.5)

    asr_code, _, _ = call_status_sync(server.address, idle(asr_config()))
    code, details, _ = riva_call(server.address, idle(riva_request()))
    assert code == asr_code == CODE.DEADLINE_EXCEEDED, details


def test_recognize_bad_audio_same_status_as_asr_v1(server):
    def asr_recognize(data: bytes, rate: int) -> grpc.StatusCode:
        from qwen3_asr_client.proto import asr_pb2_grpc
        with grpc.insecure_channel(server.address) as channel:
            try:
                asr_pb2_grpc.SpeechRecognitionStub(channel).Recognize(asr_pb2.RecognizeRequest(
                    config=asr_pb2.RecognitionConfig(sample_rate_hertz=rate), audio=data), timeout=30)
            except grpc.RpcError as error:
                return error.code()
        return CODE.OK

    for data, rate, expected in ((b"\0" * 3201, 16000, CODE.INVALID_ARGUMENT),
                                 (b"\0" * 3200, 1_000_000, CODE.INVALID_ARGUMENT),
                                 (b"\0" * (OPTIONS.max_recognize_bytes + 2), 16000, CODE.RESOURCE_EXHAUSTED)):
        assert riva_recognize(server.address, data, sample_rate_hertz=rate) == asr_recognize(data, rate) == expected
    # NaN samples: asr.v1 sends FLOAT32 raw, a Riva client a float WAV file.
    nan = np.array([0.1, np.nan, 0.2] * 100, "<f4")
    header = bytearray(_wav_header(len(nan) * 4, rate=16000, tag=3, bits=32))
    assert riva_recognize(server.address, bytes(header) + nan.tobytes()) == CODE.INVALID_ARGUMENT
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as error:
            from qwen3_asr_client.proto import asr_pb2_grpc
            asr_pb2_grpc.SpeechRecognitionStub(channel).Recognize(asr_pb2.RecognizeRequest(
                config=asr_pb2.RecognitionConfig(sample_rate_hertz=16000, encoding=asr_pb2.FLOAT32),
                audio=nan.tobytes()), timeout=30)
    assert error.value.code() == CODE.INVALID_ARGUMENT


def _wav_header(data_bytes: int, *, rate: int, tag: int, bits: int, channels: int = 1) -> bytes:
    import struct
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + data_bytes) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data_bytes))


RIVA_ONLY = {  # features we do not have: INVALID_ARGUMENT naming them
    "audio encoding 7": {"encoding": 7},
    "max_alternatives 2": {"max_alternatives": 2},
    # This server runs without a speaker model: the message names the flag that gives one.
    "--speaker-model": {"diarization_config": rasr.SpeakerDiarizationConfig(enable_speaker_diarization=True)},
    "stop_history_eou": {"endpointing_config": rasr.EndpointingConfig(stop_history_eou=300)},
}


@pytest.mark.parametrize("feature", sorted(RIVA_ONLY))
def test_unsupported_feature_is_named(server, feature):
    code, details, _ = riva_call(server.address, [riva_request(**RIVA_ONLY[feature]), riva_audio(b"\0" * 3200)])
    assert code == CODE.INVALID_ARGUMENT and feature in details, details
    assert riva_recognize(server.address, b"\0" * 3200, sample_rate_hertz=16000,
                          **RIVA_ONLY[feature]) == CODE.INVALID_ARGUMENT
