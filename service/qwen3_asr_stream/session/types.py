"""The domain of the server: what a client asked for, what it gets back, what calls share.

Protobuf stays in ``convert``; sessions and unary recognition work on these.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

import numpy as np

from qwen3_asr_client.results import SpeechEvent, Word  # shared with the client: one definition

from ..text.confidence import TokenLogprob, confidence_of, mean_logprob, word_confidences
from ..audio.input import AudioFormat
from ..audio.vad import SAMPLES_PER_MS, EndpointingOptions, EndReason
from ..engine.aligner import AlignRequest
from ..engine.bias import DEFAULT_BOOST
from ..engine.options import DEFAULT_UPDATE_INTERVAL_MS, UtteranceOptions
from ..engine.text_layer import StreamingEngine
from ..text.alignment import WordTime, clamp_word_times
from .aligner_worker import AlignerWorker
from .diarization import DiarizationOptions
from .limits import SessionLimits
from .metrics import Metrics
from .speaker_worker import SpeakerWorker

__all__ = ["Backend", "RecognitionSettings", "SpeechEvent", "Transcript", "Word", "align_words", "words_in_stream"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecognitionSettings:
    """What a client asked for, checked and with the server's defaults filled in."""

    audio: AudioFormat
    model: str
    language: str | None  # canonical name, None = detect
    context: str
    word_times: bool
    endpointing: EndpointingOptions
    interim_results: bool = False
    update_interval_ms: int = DEFAULT_UPDATE_INTERVAL_MS
    separate_channels: bool = False  # each channel its own utterances and results (else mixed down)
    diarization: DiarizationOptions | None = None  # speaker labels on finals and words (None: off)
    key_terms: tuple[str, ...] = ()  # steer decoding (engine/bias.py)
    term_boost: float = DEFAULT_BOOST

    def result_language(self, detected: str) -> str:
        """A result's language: what the model detected, else what the client forced, else ''."""
        return detected or self.language or ""

    def utterance_options(self, interim: bool) -> UtteranceOptions:
        return UtteranceOptions(language=self.language, context=self.context, interim_results=interim,
                                update_interval_s=self.update_interval_ms / 1000, key_terms=self.key_terms,
                                term_boost=self.term_boost)


@dataclass(frozen=True)
class Backend:
    """What every call shares, built by the server and handed down: the session limits, the
    engines by model name, the aligner, metrics. (Admission of calls is ``calls.Calls``.)"""

    limits: SessionLimits
    engines: dict[str, StreamingEngine]
    aligner: AlignerWorker | None
    metrics: Metrics
    speakers: SpeakerWorker | None = None  # the speaker model (None: no diarization)

    @property
    def default_model(self) -> str:
        return next(iter(self.engines))


@dataclass(frozen=True)
class SpeakerTurn:
    """A stretch of one final spoken by one speaker (ms from the stream start)."""

    speaker: int
    start_ms: int
    end_ms: int
    text: str


@dataclass(frozen=True)
class Transcript:
    """An interim or final result of one utterance (offsets in ms from the stream start).

    ``stable_text`` is a prefix of ``text``: for interims the part every later interim of the
    utterance starts with (the engine's text layer keeps it so), for finals all of the text.
    ``unstable_text`` and ``stability`` derive from it; every protocol reads them here.
    """

    utterance_index: int
    is_final: bool
    text: str
    stable_text: str
    language: str
    start_ms: int
    end_ms: int
    processed_ms: int
    latency_ms: int
    end_reason: EndReason | None = None
    words: tuple[Word, ...] = ()  # finals with word times; each with its confidence
    tokens: tuple[TokenLogprob, ...] = ()  # the transcript's tokens and their log-probabilities
    speaker: int | None = None  # finals with diarization: 1, 2, ... (stable for the stream)
    turns: tuple[SpeakerTurn, ...] = ()  # finals with diarization: the speakers in order (a change splits)
    channel: int | None = None  # separate recognition per channel: the channel, 1-based

    # An early end of turn (endpointing ``eager_pause_ms``): the speaker paused; the transcript so
    # far, decoded at once. A SpeechEvent "resumed" follows if the utterance goes on.
    eager: bool = False

    @property
    def avg_logprob(self) -> float | None:
        """Mean log-probability of the transcript's tokens (interims: each token as the update that
        decoded it scored it; None without tokens)."""
        return mean_logprob(self.tokens)

    @property
    def confidence(self) -> float | None:
        """exp(avg_logprob), in [0, 1] (None without tokens)."""
        return confidence_of(self.tokens)

    def __post_init__(self) -> None:
        assert self.text.startswith(self.stable_text), "the text layer gives a stable text that prefixes the text"

    @property
    def unstable_text(self) -> str:
        """The rest of the text after ``stable_text``, which later interims may still change."""
        return self.text[len(self.stable_text):]

    @property
    def stability(self) -> float:
        """The share of the text that later interims keep: characters of ``stable_text`` /
        characters of ``text`` (0 for an empty interim); 1 for finals. Not a probability."""
        if self.is_final:
            return 1.0
        return len(self.stable_text) / len(self.text) if self.text else 0.0


def words_in_stream(words: list[WordTime], start_sample: int, end_sample: int) -> tuple[Word, ...]:
    """Aligner times (s from the utterance audio) -> ms from the stream start, clamped to the
    utterance's audio and non-decreasing (``clamp_word_times``, shared with offline use)."""
    span = clamp_word_times(words, start_sample // SAMPLES_PER_MS, end_sample // SAMPLES_PER_MS)
    return tuple(Word(text, start, end) for text, start, end in span)


def with_confidence(words: tuple[Word, ...], tokens: tuple[TokenLogprob, ...]) -> tuple[Word, ...]:
    """The words, each with the confidence of the tokens that spell it."""
    scores = word_confidences(tokens, [w.word for w in words])
    return tuple(replace(w, confidence=c) for w, c in zip(words, scores))


async def align_words(aligner: AlignerWorker, audio: np.ndarray, text: str, language: str,
                      start_sample: int, end_sample: int, what: str) -> tuple[Word, ...]:
    """Word times of one utterance in ms from the stream start, through the shared aligner.

    When the aligner fails, the result still goes out without words (logged as ``what``).
    """
    try:
        times = await asyncio.wrap_future(aligner.submit(AlignRequest(audio, text, language)))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - the final still goes out, without words
        log.warning("%s: no word times (%s: %s)", what, type(exc).__name__, exc)
        return ()
    return words_in_stream(times, start_sample, end_sample)
