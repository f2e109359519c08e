"""Protobuf <-> domain: a client's configuration checked and completed, results and events as messages.

Everything a client can get wrong here raises InvalidRequest (INVALID_ARGUMENT)
with a message that says what to send instead.
"""

from __future__ import annotations

from qwen3_asr_client.proto import asr_pb2

from ...transcript import normalize_language
from ...audio.input import AudioEncoding, AudioFormat
from ...session.errors import InvalidRequest
from ...server.options import MAX_UPDATE_INTERVAL_MS, MIN_UPDATE_INTERVAL_MS
from ...session.types import Backend, RecognitionSettings, SpeechEvent, Transcript
from ...audio.vad import EndpointingOptions, EndReason

# ISO 639 codes accepted besides the names (BCP-47 tags like "en-US" use the first part).
LANGUAGE_CODES = {
    "zh": "Chinese", "en": "English", "yue": "Cantonese", "ar": "Arabic", "de": "German", "fr": "French",
    "es": "Spanish", "pt": "Portuguese", "id": "Indonesian", "it": "Italian", "ko": "Korean", "ru": "Russian",
    "th": "Thai", "vi": "Vietnamese", "ja": "Japanese", "tr": "Turkish", "hi": "Hindi", "ms": "Malay",
    "nl": "Dutch", "sv": "Swedish", "da": "Danish", "fi": "Finnish", "pl": "Polish", "cs": "Czech",
    "fil": "Filipino", "tl": "Filipino", "fa": "Persian", "el": "Greek", "ro": "Romanian", "hu": "Hungarian",
    "mk": "Macedonian",
}
ENCODINGS = {asr_pb2.AUDIO_ENCODING_UNSPECIFIED: AudioEncoding.LINEAR16, asr_pb2.LINEAR_PCM: AudioEncoding.LINEAR16,
             asr_pb2.FLOAT32: AudioEncoding.FLOAT32}
END_REASONS = {EndReason.SILENCE: asr_pb2.SILENCE, EndReason.MAX_LENGTH: asr_pb2.MAX_LENGTH,
               EndReason.FORCED: asr_pb2.FORCED, EndReason.END_OF_STREAM: asr_pb2.END_OF_STREAM}


def language_of(code: str) -> str | None:
    code = code.strip()
    if not code:
        return None
    name = LANGUAGE_CODES.get(code.lower()) or LANGUAGE_CODES.get(code.lower().replace("_", "-").split("-")[0])
    try:
        return normalize_language(name or code)
    except ValueError:
        raise InvalidRequest(f"unknown language_code {code!r}; use a name or code from "
                             f"GetSpeechRecognitionConfig (e.g. 'English' or 'en'), or leave it empty to detect") from None


def endpointing_of(config: asr_pb2.EndpointingConfig, default: EndpointingOptions) -> EndpointingOptions:
    """Fields at 0 (or unset) take the server's default."""
    values = {
        "aggressiveness": config.vad_aggressiveness if config.HasField("vad_aggressiveness") else default.aggressiveness,
        "start_window_ms": config.start_history_ms or default.start_window_ms,
        "start_threshold": config.start_threshold or default.start_threshold,
        "stop_window_ms": config.stop_history_ms or default.stop_window_ms,
        "stop_threshold": config.stop_threshold or default.stop_threshold,
        "pre_roll_ms": config.pre_roll_ms if config.HasField("pre_roll_ms") else default.pre_roll_ms,
        "hangover_ms": config.hangover_ms if config.HasField("hangover_ms") else default.hangover_ms,
        "max_utterance_ms": config.max_utterance_ms or default.max_utterance_ms,
        "frame_ms": config.frame_ms or default.frame_ms,
    }
    try:
        return EndpointingOptions(**values)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def endpointing_proto(options: EndpointingOptions) -> asr_pb2.EndpointingConfig:
    return asr_pb2.EndpointingConfig(
        vad_aggressiveness=options.aggressiveness, start_history_ms=options.start_window_ms,
        start_threshold=options.start_threshold, stop_history_ms=options.stop_window_ms,
        stop_threshold=options.stop_threshold, pre_roll_ms=options.pre_roll_ms, hangover_ms=options.hangover_ms,
        max_utterance_ms=options.max_utterance_ms, frame_ms=options.frame_ms)


def settings_of(backend: Backend, config: asr_pb2.RecognitionConfig,
                streaming: asr_pb2.StreamingRecognitionConfig | None = None) -> RecognitionSettings:
    """Check a client's configuration and fill in the defaults; raises InvalidRequest."""
    options = backend.options
    encoding = ENCODINGS.get(config.encoding)
    if encoding is None:
        raise InvalidRequest(f"unknown audio encoding {config.encoding}; use LINEAR_PCM (16-bit) or FLOAT32")
    if config.sample_rate_hertz == 0:
        raise InvalidRequest("sample_rate_hertz is not set; give the audio's rate, 8000 to 48000 Hz")
    try:
        audio = AudioFormat(encoding, config.sample_rate_hertz, config.audio_channel_count or 1)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    model = config.model or backend.default_model
    if model not in backend.engines:
        raise InvalidRequest(f"unknown model {config.model!r}; this server has {', '.join(backend.engines)}")
    context = "\n".join(part.strip() for part in [config.context, *config.hot_words] if part.strip())
    if len(context) > options.max_context_chars:
        raise InvalidRequest(f"context and hot words have {len(context)} characters; the limit is "
                             f"{options.max_context_chars}")
    endpointing = endpointing_of(config.endpointing, options.endpointing)
    engine_limit_ms = round(backend.engines[model].options.max_utterance_s * 1000)
    if endpointing.max_utterance_ms > engine_limit_ms:
        raise InvalidRequest(f"endpointing max_utterance_ms {endpointing.max_utterance_ms} exceeds this server's "
                             f"limit of {engine_limit_ms} ms")
    interim, interval = False, options.update_interval_ms
    if streaming is not None:
        interim = streaming.interim_results
        interval = streaming.update_interval_ms or options.update_interval_ms
        if not MIN_UPDATE_INTERVAL_MS <= interval <= MAX_UPDATE_INTERVAL_MS:
            raise InvalidRequest(f"update_interval_ms must be {MIN_UPDATE_INTERVAL_MS}-{MAX_UPDATE_INTERVAL_MS} "
                                 f"(or 0 for the default {options.update_interval_ms}), got {interval}")
    return RecognitionSettings(
        audio=audio, model=model, language=language_of(config.language_code), context=context,
        word_times=config.enable_word_time_offsets, endpointing=endpointing,
        interim_results=interim, update_interval_ms=interval)


def result_proto(t: Transcript) -> asr_pb2.StreamingRecognitionResult:
    stable = t.stable_text
    assert t.text.startswith(stable), "the engine gives a stable text that prefixes the text"
    return asr_pb2.StreamingRecognitionResult(
        transcript=t.text, is_final=t.is_final,
        stability=1.0 if t.is_final else (len(stable) / len(t.text) if t.text else 0.0),
        stable_text=stable, unstable_text=t.text[len(stable):], language_code=t.language,
        words=[asr_pb2.WordInfo(word=w.text, start_ms=w.start_ms, end_ms=w.end_ms) for w in t.words],
        utterance_index=t.utterance_index, result_start_offset_ms=t.start_ms, result_end_offset_ms=t.end_ms,
        audio_processed_ms=t.processed_ms, processing_latency_ms=t.latency_ms,
        end_reason=END_REASONS[t.end_reason] if t.end_reason else asr_pb2.END_REASON_UNSPECIFIED)


def response_proto(item: Transcript | SpeechEvent) -> asr_pb2.StreamingRecognizeResponse:
    if isinstance(item, Transcript):
        return asr_pb2.StreamingRecognizeResponse(results=[result_proto(item)])
    event = asr_pb2.SpeechEvent(
        type=asr_pb2.SpeechEvent.SPEECH_START if item.started else asr_pb2.SpeechEvent.SPEECH_END,
        offset_ms=item.offset_ms, utterance_index=item.utterance_index,
        end_reason=END_REASONS[item.end_reason] if item.end_reason else asr_pb2.END_REASON_UNSPECIFIED)
    return asr_pb2.StreamingRecognizeResponse(speech_event=event)
