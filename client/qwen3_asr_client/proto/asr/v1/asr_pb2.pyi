from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIO_ENCODING_UNSPECIFIED: _ClassVar[AudioEncoding]
    LINEAR_PCM: _ClassVar[AudioEncoding]
    FLOAT32: _ClassVar[AudioEncoding]
    MULAW: _ClassVar[AudioEncoding]
    ALAW: _ClassVar[AudioEncoding]
    OGG_OPUS: _ClassVar[AudioEncoding]
    WEBM_OPUS: _ClassVar[AudioEncoding]
    FLAC: _ClassVar[AudioEncoding]
    CONTAINER: _ClassVar[AudioEncoding]

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    SILENCE: _ClassVar[EndReason]
    MAX_LENGTH: _ClassVar[EndReason]
    FORCED: _ClassVar[EndReason]
    END_OF_STREAM: _ClassVar[EndReason]
AUDIO_ENCODING_UNSPECIFIED: AudioEncoding
LINEAR_PCM: AudioEncoding
FLOAT32: AudioEncoding
MULAW: AudioEncoding
ALAW: AudioEncoding
OGG_OPUS: AudioEncoding
WEBM_OPUS: AudioEncoding
FLAC: AudioEncoding
CONTAINER: AudioEncoding
END_REASON_UNSPECIFIED: EndReason
SILENCE: EndReason
MAX_LENGTH: EndReason
FORCED: EndReason
END_OF_STREAM: EndReason

class EndpointingConfig(_message.Message):
    __slots__ = ("vad_aggressiveness", "start_history_ms", "start_threshold", "stop_history_ms", "stop_threshold", "pre_roll_ms", "hangover_ms", "max_utterance_ms", "frame_ms", "eager_pause_ms")
    VAD_AGGRESSIVENESS_FIELD_NUMBER: _ClassVar[int]
    START_HISTORY_MS_FIELD_NUMBER: _ClassVar[int]
    START_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STOP_HISTORY_MS_FIELD_NUMBER: _ClassVar[int]
    STOP_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PRE_ROLL_MS_FIELD_NUMBER: _ClassVar[int]
    HANGOVER_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_UTTERANCE_MS_FIELD_NUMBER: _ClassVar[int]
    FRAME_MS_FIELD_NUMBER: _ClassVar[int]
    EAGER_PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    vad_aggressiveness: int
    start_history_ms: int
    start_threshold: float
    stop_history_ms: int
    stop_threshold: float
    pre_roll_ms: int
    hangover_ms: int
    max_utterance_ms: int
    frame_ms: int
    eager_pause_ms: int
    def __init__(self, vad_aggressiveness: _Optional[int] = ..., start_history_ms: _Optional[int] = ..., start_threshold: _Optional[float] = ..., stop_history_ms: _Optional[int] = ..., stop_threshold: _Optional[float] = ..., pre_roll_ms: _Optional[int] = ..., hangover_ms: _Optional[int] = ..., max_utterance_ms: _Optional[int] = ..., frame_ms: _Optional[int] = ..., eager_pause_ms: _Optional[int] = ...) -> None: ...

class RecognitionConfig(_message.Message):
    __slots__ = ("encoding", "sample_rate_hertz", "audio_channel_count", "language_code", "model", "context", "hot_words", "enable_word_time_offsets", "endpointing", "diarization", "enable_separate_recognition_per_channel")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CHANNEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    HOT_WORDS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_WORD_TIME_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    DIARIZATION_FIELD_NUMBER: _ClassVar[int]
    ENABLE_SEPARATE_RECOGNITION_PER_CHANNEL_FIELD_NUMBER: _ClassVar[int]
    encoding: AudioEncoding
    sample_rate_hertz: int
    audio_channel_count: int
    language_code: str
    model: str
    context: str
    hot_words: _containers.RepeatedScalarFieldContainer[str]
    enable_word_time_offsets: bool
    endpointing: EndpointingConfig
    diarization: DiarizationConfig
    enable_separate_recognition_per_channel: bool
    def __init__(self, encoding: _Optional[_Union[AudioEncoding, str]] = ..., sample_rate_hertz: _Optional[int] = ..., audio_channel_count: _Optional[int] = ..., language_code: _Optional[str] = ..., model: _Optional[str] = ..., context: _Optional[str] = ..., hot_words: _Optional[_Iterable[str]] = ..., enable_word_time_offsets: bool = ..., endpointing: _Optional[_Union[EndpointingConfig, _Mapping]] = ..., diarization: _Optional[_Union[DiarizationConfig, _Mapping]] = ..., enable_separate_recognition_per_channel: bool = ...) -> None: ...

class DiarizationConfig(_message.Message):
    __slots__ = ("enable", "min_speakers", "max_speakers")
    ENABLE_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    MAX_SPEAKERS_FIELD_NUMBER: _ClassVar[int]
    enable: bool
    min_speakers: int
    max_speakers: int
    def __init__(self, enable: bool = ..., min_speakers: _Optional[int] = ..., max_speakers: _Optional[int] = ...) -> None: ...

class StreamingRecognitionConfig(_message.Message):
    __slots__ = ("config", "interim_results", "update_interval_ms")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    interim_results: bool
    update_interval_ms: int
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., interim_results: bool = ..., update_interval_ms: _Optional[int] = ...) -> None: ...

class Control(_message.Message):
    __slots__ = ("kind",)
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Control.Kind]
        FINALIZE: _ClassVar[Control.Kind]
    KIND_UNSPECIFIED: Control.Kind
    FINALIZE: Control.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: Control.Kind
    def __init__(self, kind: _Optional[_Union[Control.Kind, str]] = ...) -> None: ...

class KeyTerms(_message.Message):
    __slots__ = ("terms",)
    TERMS_FIELD_NUMBER: _ClassVar[int]
    terms: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, terms: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamingRecognizeRequest(_message.Message):
    __slots__ = ("streaming_config", "audio_content", "control", "key_terms")
    STREAMING_CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    KEY_TERMS_FIELD_NUMBER: _ClassVar[int]
    streaming_config: StreamingRecognitionConfig
    audio_content: bytes
    control: Control
    key_terms: KeyTerms
    def __init__(self, streaming_config: _Optional[_Union[StreamingRecognitionConfig, _Mapping]] = ..., audio_content: _Optional[bytes] = ..., control: _Optional[_Union[Control, _Mapping]] = ..., key_terms: _Optional[_Union[KeyTerms, _Mapping]] = ...) -> None: ...

class WordInfo(_message.Message):
    __slots__ = ("word", "start_ms", "end_ms", "confidence", "speaker")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_ms: int
    end_ms: int
    confidence: float
    speaker: int
    def __init__(self, word: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., confidence: _Optional[float] = ..., speaker: _Optional[int] = ...) -> None: ...

class StreamingRecognitionResult(_message.Message):
    __slots__ = ("transcript", "is_final", "stability", "stable_text", "unstable_text", "language_code", "words", "utterance_index", "result_start_offset_ms", "result_end_offset_ms", "audio_processed_ms", "processing_latency_ms", "end_reason", "confidence", "speaker", "speaker_turns", "channel")
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    STABILITY_FIELD_NUMBER: _ClassVar[int]
    STABLE_TEXT_FIELD_NUMBER: _ClassVar[int]
    UNSTABLE_TEXT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_CODE_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    RESULT_START_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    RESULT_END_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PROCESSED_MS_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    SPEAKER_TURNS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    transcript: str
    is_final: bool
    stability: float
    stable_text: str
    unstable_text: str
    language_code: str
    words: _containers.RepeatedCompositeFieldContainer[WordInfo]
    utterance_index: int
    result_start_offset_ms: int
    result_end_offset_ms: int
    audio_processed_ms: int
    processing_latency_ms: int
    end_reason: EndReason
    confidence: float
    speaker: int
    speaker_turns: _containers.RepeatedCompositeFieldContainer[SpeakerTurn]
    channel: int
    def __init__(self, transcript: _Optional[str] = ..., is_final: bool = ..., stability: _Optional[float] = ..., stable_text: _Optional[str] = ..., unstable_text: _Optional[str] = ..., language_code: _Optional[str] = ..., words: _Optional[_Iterable[_Union[WordInfo, _Mapping]]] = ..., utterance_index: _Optional[int] = ..., result_start_offset_ms: _Optional[int] = ..., result_end_offset_ms: _Optional[int] = ..., audio_processed_ms: _Optional[int] = ..., processing_latency_ms: _Optional[int] = ..., end_reason: _Optional[_Union[EndReason, str]] = ..., confidence: _Optional[float] = ..., speaker: _Optional[int] = ..., speaker_turns: _Optional[_Iterable[_Union[SpeakerTurn, _Mapping]]] = ..., channel: _Optional[int] = ...) -> None: ...

class SpeakerTurn(_message.Message):
    __slots__ = ("speaker", "start_ms", "end_ms", "transcript")
    SPEAKER_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    speaker: int
    start_ms: int
    end_ms: int
    transcript: str
    def __init__(self, speaker: _Optional[int] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., transcript: _Optional[str] = ...) -> None: ...

class SpeechEvent(_message.Message):
    __slots__ = ("type", "offset_ms", "utterance_index", "end_reason", "transcript")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SPEECH_EVENT_UNSPECIFIED: _ClassVar[SpeechEvent.Type]
        SPEECH_START: _ClassVar[SpeechEvent.Type]
        SPEECH_END: _ClassVar[SpeechEvent.Type]
        EAGER_END_OF_TURN: _ClassVar[SpeechEvent.Type]
        TURN_RESUMED: _ClassVar[SpeechEvent.Type]
    SPEECH_EVENT_UNSPECIFIED: SpeechEvent.Type
    SPEECH_START: SpeechEvent.Type
    SPEECH_END: SpeechEvent.Type
    EAGER_END_OF_TURN: SpeechEvent.Type
    TURN_RESUMED: SpeechEvent.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    UTTERANCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    type: SpeechEvent.Type
    offset_ms: int
    utterance_index: int
    end_reason: EndReason
    transcript: str
    def __init__(self, type: _Optional[_Union[SpeechEvent.Type, str]] = ..., offset_ms: _Optional[int] = ..., utterance_index: _Optional[int] = ..., end_reason: _Optional[_Union[EndReason, str]] = ..., transcript: _Optional[str] = ...) -> None: ...

class StreamingRecognizeResponse(_message.Message):
    __slots__ = ("results", "speech_event")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_EVENT_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StreamingRecognitionResult]
    speech_event: SpeechEvent
    def __init__(self, results: _Optional[_Iterable[_Union[StreamingRecognitionResult, _Mapping]]] = ..., speech_event: _Optional[_Union[SpeechEvent, _Mapping]] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("results", "audio_duration_ms", "processing_time_ms")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StreamingRecognitionResult]
    audio_duration_ms: int
    processing_time_ms: int
    def __init__(self, results: _Optional[_Iterable[_Union[StreamingRecognitionResult, _Mapping]]] = ..., audio_duration_ms: _Optional[int] = ..., processing_time_ms: _Optional[int] = ...) -> None: ...

class GetSpeechRecognitionConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "languages", "word_time_offsets", "is_default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    WORD_TIME_OFFSETS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    languages: _containers.RepeatedScalarFieldContainer[str]
    word_time_offsets: bool
    is_default: bool
    def __init__(self, name: _Optional[str] = ..., languages: _Optional[_Iterable[str]] = ..., word_time_offsets: bool = ..., is_default: bool = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_stream_seconds", "max_message_bytes", "max_streams", "max_recognize_bytes")
    MAX_STREAM_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_FIELD_NUMBER: _ClassVar[int]
    MAX_RECOGNIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_stream_seconds: int
    max_message_bytes: int
    max_streams: int
    max_recognize_bytes: int
    def __init__(self, max_stream_seconds: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_streams: _Optional[int] = ..., max_recognize_bytes: _Optional[int] = ...) -> None: ...

class GetSpeechRecognitionConfigResponse(_message.Message):
    __slots__ = ("models", "languages", "min_sample_rate_hertz", "max_sample_rate_hertz", "encodings", "channel_counts", "limits", "default_endpointing", "default_update_interval_ms")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLE_RATE_HERTZ_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_COUNTS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_UPDATE_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    languages: _containers.RepeatedScalarFieldContainer[str]
    min_sample_rate_hertz: int
    max_sample_rate_hertz: int
    encodings: _containers.RepeatedScalarFieldContainer[AudioEncoding]
    channel_counts: _containers.RepeatedScalarFieldContainer[int]
    limits: Limits
    default_endpointing: EndpointingConfig
    default_update_interval_ms: int
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., languages: _Optional[_Iterable[str]] = ..., min_sample_rate_hertz: _Optional[int] = ..., max_sample_rate_hertz: _Optional[int] = ..., encodings: _Optional[_Iterable[_Union[AudioEncoding, str]]] = ..., channel_counts: _Optional[_Iterable[int]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., default_endpointing: _Optional[_Union[EndpointingConfig, _Mapping]] = ..., default_update_interval_ms: _Optional[int] = ...) -> None: ...
