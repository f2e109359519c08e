"""Riva messages <-> the session core's values: configuration, WAV headers, results, the model listing."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import wav_bytes
from riva.client.proto import riva_asr_pb2 as rasr
from riva.client.proto import riva_audio_pb2 as raudio

from qwen3_asr_stream.audio.input import AudioEncoding, AudioFormat  # noqa: E402
from qwen3_asr_stream.audio.vad import EndpointingOptions  # noqa: E402
from qwen3_asr_stream.protocols.grpc_riva import convert  # noqa: E402
from qwen3_asr_stream.session.errors import InvalidRequest  # noqa: E402
from qwen3_asr_stream.session.types import Transcript, Word  # noqa: E402

DEFAULT = EndpointingOptions()


def test_config_maps_onto_settings_arguments():
    config = rasr.RecognitionConfig(
        encoding=raudio.LINEAR_PCM, sample_rate_hertz=22050, audio_channel_count=2, language_code="de-DE",
        max_alternatives=1, enable_word_time_offsets=True, enable_automatic_punctuation=True,
        enable_separate_recognition_per_channel=True,
        diarization_config=rasr.SpeakerDiarizationConfig(enable_speaker_diarization=True, max_speaker_count=3),
        speech_contexts=[rasr.SpeechContext(phrases=["Qwen", "Riva"], boost=4.0),
                         rasr.SpeechContext(phrases=["gRPC"])],
        custom_configuration={"context": "a talk about speech APIs", "update_interval_ms": "500"})
    kwargs = convert.config_kwargs(config, DEFAULT)
    assert kwargs == {
        "encoding": AudioEncoding.LINEAR16, "sample_rate": 22050, "channels": 2, "language": "de-DE",
        "hot_words": ["Qwen", "Riva", "gRPC"], "key_terms": ["Qwen", "Riva", "gRPC"], "term_boost": 4.0, "word_times": True, "endpointing": None,
        "context": "a talk about speech APIs", "update_interval_ms": 500,
        "diarization": True, "max_speakers": 3, "separate_channels": True}


@pytest.mark.parametrize("code,expected", [("", None), ("multi", None), ("en-US", "en-US"), (" fr-FR ", "fr-FR")])
def test_language_codes_in(code, expected):
    assert convert.language_code(rasr.RecognitionConfig(language_code=code)) == expected


def test_endpointing_config_maps_windows_and_thresholds():
    config = rasr.RecognitionConfig(endpointing_config=rasr.EndpointingConfig(
        start_history=300, start_threshold=0.5, stop_history=800, stop_threshold=0.8))
    ep = convert.endpointing_of(config, DEFAULT)
    assert (ep.start_window_ms, ep.start_threshold, ep.stop_window_ms, ep.stop_threshold) == (300, 0.5, 800, 0.8)
    assert (ep.aggressiveness, ep.hangover_ms, ep.max_utterance_ms) == (
        DEFAULT.aggressiveness, DEFAULT.hangover_ms, DEFAULT.max_utterance_ms)
    # Pipecat's NvidiaSTTService sends stop_history 320 and leaves the rest at -1 (not set).
    pipecat = rasr.RecognitionConfig(endpointing_config=rasr.EndpointingConfig(stop_history=320))
    ep = convert.endpointing_of(pipecat, DEFAULT)
    assert ep.stop_window_ms == 320 and ep.start_window_ms == DEFAULT.start_window_ms
    # A stop window shorter than the default hangover keeps that much audio after speech.
    assert convert.endpointing_of(rasr.RecognitionConfig(endpointing_config=rasr.EndpointingConfig(
        stop_history=120)), DEFAULT).hangover_ms == 120
    assert convert.endpointing_of(rasr.RecognitionConfig(), DEFAULT) is None


@pytest.mark.parametrize("fields,words", [
    ({"start_history": 5}, "start_window_ms"),
    ({"stop_threshold": 1.5}, "stop_threshold"),
    ({"stop_history_eou": 200}, "stop_history_eou"),
    ({"stop_threshold_eou": 0.5}, "stop_threshold_eou"),
])
def test_bad_endpointing_names_the_field(fields, words):
    config = rasr.RecognitionConfig(endpointing_config=rasr.EndpointingConfig(**fields))
    with pytest.raises(InvalidRequest, match=words):
        convert.endpointing_of(config, DEFAULT)


UNSUPPORTED = {
    "unknown audio encoding 7": {"encoding": 7},
    "max_alternatives 3": {"max_alternatives": 3},
    "profanity_filter": {"profanity_filter": True},
    "custom_configuration key 'neural_vad.onset'": {"custom_configuration": {"neural_vad.onset": "0.6"}},
    "update_interval_ms must be an integer": {"custom_configuration": {"update_interval_ms": "fast"}},
}


@pytest.mark.parametrize("feature", sorted(UNSUPPORTED))
def test_unsupported_features_are_named(feature):
    config = rasr.RecognitionConfig(sample_rate_hertz=16000, **UNSUPPORTED[feature])
    with pytest.raises(InvalidRequest) as error:
        convert.config_kwargs(config, DEFAULT)
    assert feature in str(error.value)


def test_wav_header_read_and_checked():
    data = wav_bytes(np.arange(800), rate=8000, channels=2) + b"LIST\x04\x00\x00\x00abcd"
    header = convert.wav_header(data)
    assert header.format == AudioFormat(sample_rate=8000, channels=2, encoding=AudioEncoding.LINEAR16)
    assert data[header.data_offset : header.data_end] == np.arange(800).astype("<i2").tobytes()
    assert convert.wav_header(b"\0" * 64) is None
    kwargs = convert.config_kwargs(rasr.RecognitionConfig(language_code="en-US"), DEFAULT, header=header)
    assert (kwargs["sample_rate"], kwargs["channels"]) == (8000, 2)
    with pytest.raises(InvalidRequest, match="sample_rate_hertz is 16000 but the audio's WAV header says 8000"):
        convert.config_kwargs(rasr.RecognitionConfig(sample_rate_hertz=16000), DEFAULT, header=header)
    with pytest.raises(InvalidRequest, match="WAV header says 8000 Hz"):
        convert.check_header(header, AudioFormat(sample_rate=16000, channels=1, encoding=AudioEncoding.LINEAR16))
    with pytest.raises(InvalidRequest, match="no data chunk"):
        convert.wav_header(data[:36])
    eight_bit = bytearray(wav_bytes(np.zeros(10)))
    eight_bit[34] = 8  # bits per sample
    with pytest.raises(InvalidRequest, match="8-bit samples"):
        convert.wav_header(bytes(eight_bit))


def test_model_names_resolve():
    served = {"Qwen3-ASR-0.6B": None}
    parakeet = "parakeet-1.1b-en-US-asr-streaming-silero-vad-sortformer"
    assert convert.model_name("", served, any_model=False) is None  # Pipecat: the default model
    assert convert.model_name("Qwen3-ASR-0.6B", served, any_model=False) == "Qwen3-ASR-0.6B"
    assert convert.model_name(parakeet, served, any_model=False) == parakeet  # refused by settings_from
    assert convert.model_name(parakeet, served, any_model=True) is None  # --riva-any-model: the default


def test_force_eou():
    assert convert.force_eou(rasr.StreamingRecognizeRequest(runtime_config={"force_eou": "true"}))
    assert not convert.force_eou(rasr.StreamingRecognizeRequest(runtime_config={"force_eou": "false"}))
    assert not convert.force_eou(rasr.StreamingRecognizeRequest(audio_content=b"\0\0"))
    with pytest.raises(InvalidRequest, match="'force_eou' must be|force_eou must be"):
        convert.force_eou(rasr.StreamingRecognizeRequest(runtime_config={"force_eou": "soon"}))
    with pytest.raises(InvalidRequest, match="runtime_config key 'beam'"):
        convert.force_eou(rasr.StreamingRecognizeRequest(runtime_config={"beam": "4"}))


def test_results_carry_bcp47_words_in_stream_ms_and_the_request_id():
    final = Transcript(utterance_index=0, is_final=True, text="hello world", stable_text="hello world",
                       language="English", start_ms=500, end_ms=1400, processed_ms=1700, latency_ms=20,
                       end_reason=None, words=(Word("hello", 520, 800), Word("world", 900, 1350)))
    response = convert.streaming_response(final, "req-7")
    assert response.id.value == "req-7" and len(response.results) == 1
    result = response.results[0]
    assert (result.is_final, result.stability, result.channel_tag) == (True, 1.0, 1)
    assert result.audio_processed == pytest.approx(1.7)  # seconds
    (alt,) = result.alternatives
    assert alt.transcript == "hello world" and list(alt.language_code) == ["en-US"]
    assert [(w.word, w.start_time, w.end_time, w.language_code) for w in alt.words] == [
        ("hello", 520, 800, "en-US"), ("world", 900, 1350, "en-US")]

    interim = Transcript(utterance_index=1, is_final=False, text="good morn", stable_text="good ",
                         language="", start_ms=2000, end_ms=2600, processed_ms=2600, latency_ms=30,
                         end_reason=None, words=())
    result = convert.streaming_response(interim).results[0]
    assert not result.is_final and result.stability == pytest.approx(5 / 9)
    assert list(result.alternatives[0].language_code) == [] and not convert.streaming_response(interim).HasField("id")

    offline = convert.recognize_response([final, final], "r")
    assert len(offline.results) == 2 and offline.id.value == "r"


def test_model_listing_reads_as_transcribe_file_list_models():
    response = convert.model_configs(["Qwen3-ASR-0.6B", "Qwen3-ASR-1.7B"], "Qwen3-ASR-0.6B",
                                     ["English", "Chinese", "Cantonese"], word_times=True)
    online = [c for c in response.model_config if c.parameters["type"] == "online"]
    offline = [c for c in response.model_config if c.parameters["type"] == "offline"]
    assert [c.model_name for c in online] == [c.model_name for c in offline] == ["Qwen3-ASR-0.6B", "Qwen3-ASR-1.7B"]
    first = online[0].parameters
    assert first["language_code"] == "multi" and first["default"] == "true" and first["word_time_offsets"] == "true"
    assert first["language_codes"] == "en-US,yue-HK,zh-CN"
    only = convert.model_configs(["a", "b"], "a", ["English"], word_times=False, model_name="b")
    assert {c.model_name for c in only.model_config} == {"b"}
