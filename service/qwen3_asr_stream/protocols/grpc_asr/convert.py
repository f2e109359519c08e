"""Protobuf <-> domain: a client's configuration checked and completed, results and events as messages.

Everything a client can get wrong here raises InvalidRequest (INVALID_ARGUMENT)
with a message that says what to send instead.
"""

from __future__ import annotations

from qwen3_asr_client.proto import asr_pb2

from ...audio.input import AudioEncoding
from ...audio.vad import EndpointingOptions, EndReason
from ...session.errors import InvalidRequest
from ...session.settings import endpointing_with, settings_from
from ...session.types import Backend, RecognitionSettings, SpeechEvent, Transcript

# asr.v1's AudioEncoding values -> the codec layer's (audio/codecs.py); the names are the same.
ENCODINGS = {asr_pb2.AUDIO_ENCODING_UNSPECIFIED: AudioEncoding.LINEAR16, asr_pb2.LINEAR_PCM: AudioEncoding.LINEAR16,
             **{asr_pb2.AudioEncoding.Value(e.name): e for e in AudioEncoding if e is not AudioEncoding.LINEAR16}}
END_REASONS = {EndReason.SILENCE: asr_pb2.SILENCE, EndReason.MAX_LENGTH: asr_pb2.MAX_LENGTH,
               EndReason.FORCED: asr_pb2.FORCED, EndReason.END_OF_STREAM: asr_pb2.END_OF_STREAM}


def endpointing_of(config: asr_pb2.EndpointingConfig, default: EndpointingOptions) -> EndpointingOptions:
    """Fields at 0 (or unset) take the server's default."""
    return endpointing_with(
        default,
        aggressiveness=config.vad_aggressiveness if config.HasField("vad_aggressiveness") else None,
        start_window_ms=config.start_history_ms or None, start_threshold=config.start_threshold or None,
        stop_window_ms=config.stop_history_ms or None, stop_threshold=config.stop_threshold or None,
        pre_roll_ms=config.pre_roll_ms if config.HasField("pre_roll_ms") else None,
        hangover_ms=config.hangover_ms if config.HasField("hangover_ms") else None,
        max_utterance_ms=config.max_utterance_ms or None, frame_ms=config.frame_ms or None,
        eager_pause_ms=config.eager_pause_ms or None)


def endpointing_proto(options: EndpointingOptions) -> asr_pb2.EndpointingConfig:
    return asr_pb2.EndpointingConfig(
        vad_aggressiveness=options.aggressiveness, start_history_ms=options.start_window_ms,
        start_threshold=options.start_threshold, stop_history_ms=options.stop_window_ms,
        stop_threshold=options.stop_threshold, pre_roll_ms=options.pre_roll_ms, hangover_ms=options.hangover_ms,
        max_utterance_ms=options.max_utterance_ms, frame_ms=options.frame_ms, eager_pause_ms=options.eager_pause_ms)


def settings_of(backend: Backend, config: asr_pb2.RecognitionConfig,
                streaming: asr_pb2.StreamingRecognitionConfig | None = None) -> RecognitionSettings:
    """Check a client's configuration and fill in the defaults; raises InvalidRequest."""
    encoding = ENCODINGS.get(config.encoding)
    if encoding is None:
        names = ", ".join(asr_pb2.AudioEncoding.Name(v) for v in sorted(ENCODINGS) if v)
        raise InvalidRequest(f"unknown audio encoding {config.encoding}; use one of {names}")
    if config.sample_rate_hertz == 0 and encoding.raw:
        raise InvalidRequest(f"sample_rate_hertz is not set; give the audio's rate, 8000 to 48000 Hz "
                             f"({encoding.name} is raw samples; a container such as OGG_OPUS may leave it 0)")
    return settings_from(
        backend, encoding=encoding, sample_rate=config.sample_rate_hertz, channels=config.audio_channel_count,
        model=config.model, language=config.language_code, context=config.context, hot_words=config.hot_words,
        key_terms=config.hot_words,
        word_times=config.enable_word_time_offsets,
        endpointing=endpointing_of(config.endpointing, backend.limits.endpointing),
        interim_results=streaming is not None and streaming.interim_results,
        update_interval_ms=streaming.update_interval_ms if streaming is not None else None,
        diarization=config.diarization.enable, min_speakers=config.diarization.min_speakers,
        max_speakers=config.diarization.max_speakers,
        separate_channels=config.enable_separate_recognition_per_channel)


def result_proto(t: Transcript) -> asr_pb2.StreamingRecognitionResult:
    return asr_pb2.StreamingRecognitionResult(
        transcript=t.text, is_final=t.is_final, stability=t.stability,
        stable_text=t.stable_text, unstable_text=t.unstable_text, language_code=t.language,
        words=[asr_pb2.WordInfo(word=w.word, start_ms=w.start_ms, end_ms=w.end_ms, confidence=w.confidence,
                               speaker=w.speaker)
               for w in t.words],
        utterance_index=t.utterance_index, result_start_offset_ms=t.start_ms, result_end_offset_ms=t.end_ms,
        audio_processed_ms=t.processed_ms, processing_latency_ms=t.latency_ms,
        end_reason=END_REASONS[t.end_reason] if t.end_reason else asr_pb2.END_REASON_UNSPECIFIED,
        confidence=t.confidence, speaker=t.speaker,
        speaker_turns=[asr_pb2.SpeakerTurn(speaker=turn.speaker, start_ms=turn.start_ms, end_ms=turn.end_ms,
                                           transcript=turn.text) for turn in t.turns],
        channel=t.channel)  # None (unset): interims, empty finals, diarization off


EVENT_TYPES = {"start": asr_pb2.SpeechEvent.SPEECH_START, "end": asr_pb2.SpeechEvent.SPEECH_END,
               "resumed": asr_pb2.SpeechEvent.TURN_RESUMED}


def response_proto(item: Transcript | SpeechEvent) -> asr_pb2.StreamingRecognizeResponse:
    """A result, or a speech event; an early end of turn (``Transcript.eager``) is the event
    EAGER_END_OF_TURN with its transcript (not an interim result: it comes with interims off too)."""
    if isinstance(item, Transcript) and item.eager:
        return asr_pb2.StreamingRecognizeResponse(speech_event=asr_pb2.SpeechEvent(
            type=asr_pb2.SpeechEvent.EAGER_END_OF_TURN, offset_ms=item.end_ms, utterance_index=item.utterance_index,
            transcript=item.text))
    if isinstance(item, Transcript):
        return asr_pb2.StreamingRecognizeResponse(results=[result_proto(item)])
    event = asr_pb2.SpeechEvent(
        type=EVENT_TYPES[item.type], offset_ms=item.offset_ms, utterance_index=item.utterance_index,
        end_reason=END_REASONS[item.end_reason] if item.end_reason else asr_pb2.END_REASON_UNSPECIFIED)
    return asr_pb2.StreamingRecognizeResponse(speech_event=event)
