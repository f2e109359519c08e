"""Riva's ASR messages <-> the session core: configuration in, results out.

The messages are the ones ``nvidia-riva-client`` ships (``riva.client.proto``).
A ``RecognitionConfig`` becomes the keyword arguments of ``settings_from`` (which
checks them as it does for every protocol); a feature we do not have raises
InvalidRequest naming it; a ``Transcript`` becomes a response with one result.

    kwargs = config_kwargs(config, options.endpointing)         # protobuf -> plain values
    model = model_name(config.model, backend.engines, options.riva_any_model)
    settings = settings_from(backend, model=model, **kwargs)    # the core's one check
    response = streaming_response(transcript, request_id)
"""

from __future__ import annotations

from dataclasses import dataclass

from riva.client.proto import riva_asr_pb2 as rasr
from qwen3_asr_client.audio_files import WavError, WavIncomplete, parse_wav_header
from riva.client.proto import riva_audio_pb2 as raudio

from ...audio.input import AudioEncoding, AudioFormat
from ...audio.vad import EndpointingOptions
from ...engine.options import MAX_UPDATE_INTERVAL_MS, MIN_UPDATE_INTERVAL_MS
from ...session.errors import InvalidRequest
from ...session.settings import bcp47_of, endpointing_with
from ...session.types import Transcript

# Riva's AudioEncoding -> the codec layer's (audio/codecs.py). LINEAR_PCM (and unset) is 16-bit PCM,
# MULAW / ALAW raw G.711 at sample_rate_hertz; FLAC and OGGOPUS are streams with their own rate
# (sample_rate_hertz may be 0; a rate given must agree with the stream's).
ENCODINGS = {raudio.ENCODING_UNSPECIFIED: AudioEncoding.LINEAR16, raudio.LINEAR_PCM: AudioEncoding.LINEAR16,
             raudio.MULAW: AudioEncoding.MULAW, raudio.ALAW: AudioEncoding.ALAW, raudio.FLAC: AudioEncoding.FLAC,
             raudio.OGGOPUS: AudioEncoding.OGG_OPUS}
# Language codes that ask for detection: empty, and Riva's name for its multilingual models.
DETECT_CODES = ("", "multi")
# custom_configuration keys of ours (a Riva server passes such keys to its pipeline).
CUSTOM_KEYS = {
    "context": "text that biases recognition (names, terms), as our context",
    "update_interval_ms": f"interim cadence, {MIN_UPDATE_INTERVAL_MS}-{MAX_UPDATE_INTERVAL_MS} ms",
}
RUNTIME_KEYS = ("force_eou",)
TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no", "")

@dataclass(frozen=True)
class WavHeader:
    """A WAV header at the start of a request's audio (Riva's clients send a file's bytes as they are)."""

    format: AudioFormat
    data_offset: int  # where the samples start
    data_end: int | None  # where the data chunk ends by its size field; None: to the end (streamed files)


def wav_header(data: bytes) -> WavHeader | None:
    """The format and data offset of a RIFF/WAVE header at the start of ``data``; None when
    ``data`` does not start with one. Raises InvalidRequest for a WAV we cannot read."""
    try:
        header = parse_wav_header(data)
    except WavIncomplete:
        raise InvalidRequest("the audio starts with a WAV header that has no data chunk in this message; "
                             "send the header and the first samples together, or raw LINEAR_PCM") from None
    except WavError as exc:
        raise InvalidRequest(f"the WAV header cannot be read: {exc}") from None
    if header is None:
        return None
    if header.encoding is None:
        raise InvalidRequest(f"WAV audio with format tag {header.format_tag} and {header.bits}-bit samples is "
                             "not supported; send 16-bit PCM (LINEAR_PCM), float, mu-law or A-law WAV")
    try:
        audio = AudioFormat(sample_rate=header.sample_rate, channels=header.channels,
                            encoding=AudioEncoding[header.encoding])
    except ValueError as exc:
        raise InvalidRequest(f"WAV header: {exc}") from None
    return WavHeader(audio, header.data_offset, header.data_end)


def check_header(header: WavHeader, audio: AudioFormat) -> None:
    """A streamed file's header must agree with the configuration the stream started with."""
    if header.format != audio:
        got = header.format
        raise InvalidRequest(
            f"the WAV header says {got.sample_rate} Hz, {got.channels} channel(s), {got.encoding.name}, but "
            f"streaming_config says {audio.sample_rate} Hz, {audio.channels} channel(s), {audio.encoding.name}")


def language_code(config: rasr.RecognitionConfig) -> str | None:
    code = config.language_code.strip()
    return None if code.lower() in DETECT_CODES else code


def endpointing_of(config: rasr.RecognitionConfig, default: EndpointingOptions) -> EndpointingOptions | None:
    """Riva's ``endpointing_config`` onto our VAD endpointing; None = the server's default.

    start_history / stop_history (ms windows) -> start_window_ms / stop_window_ms;
    start_threshold / stop_threshold (fractions) -> ours. Riva counts frames whose
    acoustic-model speech probability passes its threshold, we count frames webrtcvad
    calls voiced; the windows and fractions mean the same otherwise. Unset, 0 or negative
    fields keep the server's default.
    """
    if not config.HasField("endpointing_config"):
        return None
    ep = config.endpointing_config
    for name in ("stop_history_eou", "stop_threshold_eou"):
        if ep.HasField(name) and getattr(ep, name) > 0:
            raise InvalidRequest(f"endpointing_config.{name} is not supported: this server has one end-of-utterance "
                                 "detection (stop_history / stop_threshold) and no early first pass")

    def given(name: str):
        value = getattr(ep, name)
        if not ep.HasField(name) or value <= 0:
            return None
        return round(value, 4) if isinstance(value, float) else value  # the float32 0.8 is 0.800000011920929

    stop_window = given("stop_history")
    # A stop window shorter than the audio kept after speech keeps that much less.
    hangover = min(default.hangover_ms, stop_window) if stop_window is not None else None
    try:
        return endpointing_with(default, start_window_ms=given("start_history"),
                                start_threshold=given("start_threshold"), stop_window_ms=stop_window,
                                stop_threshold=given("stop_threshold"), hangover_ms=hangover)
    except InvalidRequest as exc:
        raise InvalidRequest(f"endpointing_config (start_history, stop_history in ms; thresholds in (0, 1]): "
                             f"{exc}") from None


def custom_of(config: rasr.RecognitionConfig) -> dict:
    """``custom_configuration`` keys of ours -> settings keyword arguments."""
    out = {}
    for key, value in config.custom_configuration.items():
        if key == "context":
            out["context"] = value
        elif key == "update_interval_ms":
            try:
                out["update_interval_ms"] = int(value)
            except ValueError:
                raise InvalidRequest(f"custom_configuration update_interval_ms must be an integer, got {value!r}")
        else:
            known = ", ".join(f"{k} ({meaning})" for k, meaning in CUSTOM_KEYS.items())
            raise InvalidRequest(f"custom_configuration key {key!r} is not supported; this server knows {known}")
    return out


def unsupported(config: rasr.RecognitionConfig) -> None:
    """Raise InvalidRequest naming the first requested feature this server does not have."""
    if config.encoding not in ENCODINGS:
        names = ", ".join(raudio.AudioEncoding.Name(e) for e in ENCODINGS if e)
        raise InvalidRequest(f"unknown audio encoding {config.encoding}; send one of {names}")
    if config.max_alternatives > 1:
        raise InvalidRequest(f"max_alternatives {config.max_alternatives} is not supported: this server gives "
                             "one alternative; set 0 or 1")
    if config.profanity_filter:
        raise InvalidRequest("profanity_filter is not supported by this server; set it to false")


def config_kwargs(config: rasr.RecognitionConfig, default_endpointing: EndpointingOptions, *,
                  header: WavHeader | None = None) -> dict:
    """A Riva RecognitionConfig -> ``settings_from`` keyword arguments (all but the model).

    ``header``: the WAV header that unary audio starts with; its format is used (Riva's
    clients leave the rate unset for files), and a configuration naming another rate or
    channel count is refused.
    """
    unsupported(config)
    encoding = ENCODINGS[config.encoding]
    if header is not None and not encoding.raw:
        raise InvalidRequest(f"the audio is a WAV file but encoding is {raudio.AudioEncoding.Name(config.encoding)}; "
                             f"set the encoding of the WAV's samples (LINEAR_PCM, MULAW, ALAW)")
    if header is None:
        rate, channels = config.sample_rate_hertz, config.audio_channel_count
    else:
        fmt = header.format
        for field, value, ours in (("sample_rate_hertz", config.sample_rate_hertz, fmt.sample_rate),
                                   ("audio_channel_count", config.audio_channel_count, fmt.channels)):
            if value and value != ours:
                raise InvalidRequest(f"{field} is {value} but the audio's WAV header says {ours}")
        encoding, rate, channels = fmt.encoding, fmt.sample_rate, fmt.channels
    return {
        "encoding": encoding,
        "sample_rate": rate,
        "channels": channels or 1,
        "language": language_code(config),
        "hot_words": [phrase for context in config.speech_contexts for phrase in context.phrases],
        # The phrases also steer decoding (engine/bias.py), with the largest boost given (0: our default).
        "key_terms": [phrase for context in config.speech_contexts for phrase in context.phrases],
        "term_boost": max((context.boost for context in config.speech_contexts), default=0.0) or None,
        # Riva gives speakers as words' speaker_tag: diarization brings the words.
        "word_times": config.enable_word_time_offsets or config.diarization_config.enable_speaker_diarization,
        "diarization": config.diarization_config.enable_speaker_diarization,
        "separate_channels": config.enable_separate_recognition_per_channel,
        "max_speakers": (config.diarization_config.max_speaker_count
                         if config.diarization_config.enable_speaker_diarization else 0),
        "endpointing": endpointing_of(config, default_endpointing),
        **custom_of(config),
    }


def model_name(requested: str, served, any_model: bool) -> str | None:
    """The model a Riva request gets: "" -> None (the server's default); a served name -> it;
    another name -> None with ``any_model`` (the server flag ``--riva-any-model``), else the
    name itself, which ``settings_from`` refuses naming the served models."""
    if not requested or requested in served:
        return requested or None
    return None if any_model else requested


def force_eou(request: rasr.StreamingRecognizeRequest) -> bool:
    """Whether a streaming request's ``runtime_config`` asks to end the utterance now."""
    for key, value in request.runtime_config.items():
        if key not in RUNTIME_KEYS:
            raise InvalidRequest(f"runtime_config key {key!r} is not supported; this server knows "
                                 f"{', '.join(RUNTIME_KEYS)}")
        if value.strip().lower() not in TRUE + FALSE:
            raise InvalidRequest(f"runtime_config {key} must be 'true' or 'false', got {value!r}")
    return request.runtime_config.get("force_eou", "").strip().lower() in TRUE


# -- results ----------------------------------------------------------------------------------


def alternative(t: Transcript) -> rasr.SpeechRecognitionAlternative:
    """The one alternative of a transcript; words (finals with word times) in ms from the stream
    start; the language as a BCP-47 tag on the alternative and on each word. ``confidence``
    (alternative and words, 0-1) on finals; Riva's proto has no presence for it, so an interim's
    reads 0."""
    code = bcp47_of(t.language) if t.language else ""
    return rasr.SpeechRecognitionAlternative(
        transcript=t.text, language_code=[code] if code else [], confidence=t.confidence or 0.0,
        words=[rasr.WordInfo(word=w.word, start_time=w.start_ms, end_time=w.end_ms, language_code=code,
                             confidence=w.confidence or 0.0, speaker_tag=w.speaker or 0)
               for w in t.words])


def streaming_response(t: Transcript, request_id: str = "") -> rasr.StreamingRecognizeResponse:
    """One result per response (frameworks treat each result as its own transcript)."""
    result = rasr.StreamingRecognitionResult(
        alternatives=[alternative(t)], is_final=t.is_final, stability=t.stability, channel_tag=t.channel or 1,
        audio_processed=t.processed_ms / 1000)
    response = rasr.StreamingRecognizeResponse(results=[result])
    if request_id:
        response.id.value = request_id
    return response


def recognize_response(transcripts, request_id: str = "") -> rasr.RecognizeResponse:
    response = rasr.RecognizeResponse(results=[
        rasr.SpeechRecognitionResult(alternatives=[alternative(t)], channel_tag=t.channel or 1,
                                     audio_processed=t.processed_ms / 1000)
        for t in transcripts])
    if request_id:
        response.id.value = request_id
    return response


def model_configs(models, default_model: str, languages, word_times: bool,
                  model_name: str = "") -> rasr.RivaSpeechRecognitionConfigResponse:
    """Each model twice, as Riva lists a streaming and an offline pipeline: parameters
    ``type`` (online / offline) and ``language_code`` ("multi": the model detects the
    language) are what ``transcribe_file.py --list-models`` and LiveKit read; the others say
    which languages it takes (BCP-47) and whether it is the default and gives word times."""
    tags = ",".join(sorted({tag for tag in (bcp47_of(name) for name in languages) if tag}))
    configs = [
        rasr.RivaSpeechRecognitionConfigResponse.Config(model_name=name, parameters={
            "type": kind, "streaming": str(kind == "online").lower(), "language_code": "multi",
            "language_codes": tags, "default": str(name == default_model).lower(),
            "word_time_offsets": str(word_times).lower(),
            "encoding": ",".join(raudio.AudioEncoding.Name(e) for e in ENCODINGS if e),
        })
        for name in models if not model_name or name == model_name for kind in ("online", "offline")]
    return rasr.RivaSpeechRecognitionConfigResponse(model_config=configs)
