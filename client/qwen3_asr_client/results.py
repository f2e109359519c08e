"""Plain Python views of the audio format and of the server's responses."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterator, Union

from .proto import asr_pb2

ENCODINGS = {"LINEAR16": asr_pb2.LINEAR_PCM, "FLOAT32": asr_pb2.FLOAT32, "MULAW": asr_pb2.MULAW,
             "ALAW": asr_pb2.ALAW, "OGG_OPUS": asr_pb2.OGG_OPUS, "WEBM_OPUS": asr_pb2.WEBM_OPUS,
             "FLAC": asr_pb2.FLAC, "CONTAINER": asr_pb2.CONTAINER}
_SAMPLE_BYTES = {"LINEAR16": 2, "FLOAT32": 4, "MULAW": 1, "ALAW": 1}
CONTAINER_CHUNK_BYTES = 4096  # a compressed file is sent in pieces of this size (the server paces it)


@dataclass(frozen=True)
class AudioFormat:
    """How the audio bytes are laid out.

    Raw samples (LINEAR16, FLOAT32, MULAW, ALAW): little-endian, channels interleaved, at
    ``sample_rate``. Containers (OGG_OPUS, WEBM_OPUS, FLAC, CONTAINER: detected by the server)
    carry their own rate and channels: ``sample_rate`` 0 lets the server read them."""

    sample_rate: int = 16_000
    channels: int = 1
    encoding: str = "LINEAR16"  # or FLOAT32, MULAW, ALAW, OGG_OPUS, WEBM_OPUS, FLAC, CONTAINER

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, got {self.encoding!r}")
        if self.sample_rate < (1 if self.raw else 0) or self.channels <= 0:
            raise ValueError(f"sample_rate and channels must be positive, got {self.sample_rate}, {self.channels}")

    @property
    def raw(self) -> bool:
        """Fixed-size samples (their duration is known from their size)."""
        return self.encoding in _SAMPLE_BYTES

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample of every channel (1 for a container: bytes are its unit)."""
        return _SAMPLE_BYTES.get(self.encoding, 1) * (self.channels if self.raw else 1)

    @property
    def bytes_per_second(self) -> int:
        """0 for a container (unknown before decoding)."""
        return self.frame_bytes * self.sample_rate if self.raw else 0

    def chunk_bytes(self, chunk_ms: float) -> int:
        """Bytes of chunk_ms of audio, a whole number of frames (at least one); a container's
        pieces are CONTAINER_CHUNK_BYTES."""
        if not self.raw:
            return CONTAINER_CHUNK_BYTES
        return max(1, round(self.sample_rate * chunk_ms / 1000)) * self.frame_bytes


@dataclass(frozen=True)
class Word:
    word: str
    start_ms: int  # from the start of the stream
    end_ms: int
    confidence: float | None = None  # 0-1: exp(mean log-probability of the word's tokens); finals
    speaker: int | None = None  # with diarization: 1, 2, ... in the order speakers first spoke


@dataclass(frozen=True)
class SpeakerTurn:
    """Diarization: a stretch of a final spoken by one speaker (ms from the stream start)."""

    speaker: int
    start_ms: int
    end_ms: int
    transcript: str


@dataclass(frozen=True)
class Result:
    """One interim or final transcript of an utterance."""

    transcript: str
    is_final: bool
    stability: float
    stable_text: str
    unstable_text: str
    language: str
    words: tuple[Word, ...]
    utterance_index: int
    start_ms: int  # start of the utterance's audio, from the start of the stream
    end_ms: int  # end of the audio this result covers
    audio_processed_ms: int
    latency_ms: int
    end_reason: str  # "silence", "max_length", "forced", "end_of_stream"; "" for interim results
    confidence: float | None = None  # 0-1, exp(mean log-probability of the transcript's tokens); None without tokens
    speaker: int | None = None  # finals with diarization: who spoke most of it (words carry changes)
    speaker_turns: tuple[SpeakerTurn, ...] = ()  # finals with diarization: who spoke which part
    channel: int | None = None  # separate recognition per channel: the channel, from 1

    @classmethod
    def from_proto(cls, r: asr_pb2.StreamingRecognitionResult) -> "Result":
        reason = asr_pb2.EndReason.Name(r.end_reason) if r.end_reason else ""
        return cls(
            transcript=r.transcript,
            is_final=r.is_final,
            stability=r.stability,
            stable_text=r.stable_text,
            unstable_text=r.unstable_text,
            language=r.language_code,
            words=tuple(Word(w.word, w.start_ms, w.end_ms, w.confidence if w.HasField("confidence") else None,
                             w.speaker if w.HasField("speaker") else None) for w in r.words),
            utterance_index=r.utterance_index,
            start_ms=r.result_start_offset_ms,
            end_ms=r.result_end_offset_ms,
            audio_processed_ms=r.audio_processed_ms,
            latency_ms=r.processing_latency_ms,
            end_reason=reason.lower(),
            confidence=r.confidence if r.HasField("confidence") else None,
            speaker=r.speaker if r.HasField("speaker") else None,
            speaker_turns=tuple(SpeakerTurn(t.speaker, t.start_ms, t.end_ms, t.transcript) for t in r.speaker_turns),
            channel=r.channel if r.HasField("channel") else None,
        )


@dataclass(frozen=True)
class SpeechEvent:
    """Voice activity: type is "start", "end", or with an eager pause (``RecognitionOptions.eager_pause_ms``)
    "eager_end_of_turn" (the speaker paused; ``transcript`` is the text so far) and "resumed" (the
    speech went on in the same utterance)."""

    type: str
    offset_ms: int  # from the start of the stream
    utterance_index: int
    end_reason: str = ""
    transcript: str = ""  # eager_end_of_turn: the transcript so far

    @classmethod
    def from_proto(cls, e: asr_pb2.SpeechEvent) -> "SpeechEvent":
        kind = {asr_pb2.SpeechEvent.SPEECH_START: "start", asr_pb2.SpeechEvent.SPEECH_END: "end",
                asr_pb2.SpeechEvent.EAGER_END_OF_TURN: "eager_end_of_turn",
                asr_pb2.SpeechEvent.TURN_RESUMED: "resumed"}
        reason = asr_pb2.EndReason.Name(e.end_reason).lower() if e.end_reason else ""
        return cls(kind.get(e.type, "unspecified"), e.offset_ms, e.utterance_index, reason, e.transcript)


StreamItem = Union[Result, SpeechEvent]


def items_of(response: asr_pb2.StreamingRecognizeResponse) -> Iterator[StreamItem]:
    """The results and the speech event of a response, in time order.

    A SPEECH_START event comes before the results sent with it; a SPEECH_END after.
    """
    event = SpeechEvent.from_proto(response.speech_event) if response.HasField("speech_event") else None
    if event is not None and event.type != "end":
        yield event
    for result in response.results:
        yield Result.from_proto(result)
    if event is not None and event.type == "end":
        yield event


def printable(text: str) -> str:
    """``text`` with control characters (escape sequences, carriage returns, newlines: anything a
    terminal would act on) written as ``\\xNN`` / ``\\uNNNN``, so a transcript is shown, never obeyed.
    JSON output needs no such care: it escapes them itself."""
    if text.isprintable():
        return text
    return "".join(c if unicodedata.category(c) != "Cc" else ascii(c)[1:-1] for c in text)
