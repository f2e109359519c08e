"""Deepgram's ``/v1/listen`` query parameters -> the session core's settings, checked once.

Every parameter Deepgram documents is in exactly one of these tables:

==========================  =================================================================
``PARSERS``                 honored: model, language, detect_language, encoding, sample_rate,
                            channels, interim_results, endpointing, utterance_end_ms,
                            vad_events, keyterm / keywords (key terms that steer decoding),
                            diarize (the core's diarization: needs ``--speaker-model``),
                            multichannel (the core's separate channels: raw encodings)
``HINTS``                   accepted, any value, with no effect on the output (Deepgram
                            documents them as formatting or account options; our model
                            punctuates and keeps what it hears): punctuate, smart_format,
                            no_delay, filler_words, mip_opt_out, tag, version, extra
``OFF_ONLY``                accepted when false (what we do), refused when true:
                            diarize_version, profanity_filter, numerals, dictation,
                            detect_entities, paragraphs, utterances, ...
anything else               refused: HTTP 400 naming the parameter
==========================  =================================================================

Deepgram's encoding names map onto the audio layer's decoders in its one table
(``audio.codecs.deepgram_encoding``: linear16, mulaw, alaw, opus / ogg-opus, flac; no encoding:
containerized audio, detected from the bytes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ..audio.codecs import AudioEncoding, deepgram_encoding
from ..audio.input import MAX_CHANNELS, SEPARATE_NEEDS_RAW
from ..audio.vad import MAX_WINDOW_MS, EndpointingOptions
from ..session.errors import InvalidRequest
from ..session.settings import endpointing_with, language_of, settings_from
from ..session.types import Backend, RecognitionSettings

# Deepgram's model families select the server's default model, so clients whose model is fixed work.
DEEPGRAM_MODEL_PREFIXES = ("nova", "base", "enhanced", "general", "phonecall", "meeting", "voicemail", "finance",
                           "conversationalai", "video", "medical", "drivethru", "automotive", "atc", "whisper",
                           "flux")
HINTS = frozenset({"punctuate", "smart_format", "no_delay", "filler_words", "mip_opt_out", "tag", "version",
                   "extra"})
OFF_ONLY = {
    "profanity_filter": "this server has no profanity filter",
    "numerals": "this server does not rewrite numbers (numerals)",
    "dictation": "this server does not convert spoken punctuation (dictation)",
    "detect_entities": "this server does not detect entities",
    "paragraphs": "this server does not split paragraphs",
    "utterances": "this server does not return utterances; each final Results message is one utterance",
    "diarize_version": "this server has one speaker model; send diarize=true without diarize_version",
    "sentiment": "this server does not analyze sentiment",
    "topics": "this server does not detect topics",
    "intents": "this server does not detect intents",
    "summarize": "this server does not summarize",
}
MIN_ENDPOINTING_MS = 90  # shorter silences are raised to this (three 30 ms VAD frames); README says so
MIN_UTTERANCE_END_MS = 1000  # Deepgram's own lower bound


class BadParameter(InvalidRequest):
    """A query parameter Deepgram's API would refuse too (HTTP 400 naming it)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


@dataclass(frozen=True)
class ListenOptions:
    """What a ``/v1/listen`` request asked for (None: not given)."""

    model: str | None = None
    language: str | None = None
    detect_language: bool = False
    encoding: AudioEncoding | None = None  # None: containerized audio (detected from the bytes)
    sample_rate: int | None = None
    channels: int = 1
    interim_results: bool = False
    endpointing_ms: int | None = None
    utterance_end_ms: int | None = None
    vad_events: bool = False
    keyterms: tuple[str, ...] = ()
    diarize: bool = False  # speaker labels on words (the core's diarization)
    multichannel: bool = False  # each channel recognized on its own (the core's separate channels)


def _bool(param: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise BadParameter(param, f"must be true or false, got {value!r}")
    return lowered == "true"


def _int(param: str, value: str, low: int, high: int, unit: str = "") -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise BadParameter(param, f"must be an integer{unit}, got {value!r}") from None
    if not low <= number <= high:
        raise BadParameter(param, f"must be {low}-{high}{unit}, got {number}")
    return number


def _encoding(value: str) -> dict:
    try:
        return {"encoding": deepgram_encoding(value)}
    except ValueError as exc:
        raise BadParameter("encoding", str(exc)) from None


def _endpointing(value: str) -> dict:
    if value.strip().lower() == "false":
        raise BadParameter("endpointing", "false is not supported: this server ends utterances at a silence; give "
                                          f"the silence in ms ({MIN_ENDPOINTING_MS}-{MAX_WINDOW_MS})")
    if value.strip().lower() == "true":
        return {}
    return {"endpointing_ms": max(MIN_ENDPOINTING_MS, _int("endpointing", value, 0, MAX_WINDOW_MS, " ms"))}


def _keywords(values: Sequence[str]) -> tuple[str, ...]:
    """``word:boost`` (Deepgram's older form) -> the words (the boost is a hint here)."""
    words = []
    for value in values:
        word, _, boost = value.rpartition(":") if ":" in value else (value, "", "")
        if boost:
            try:
                float(boost)
            except ValueError:
                raise BadParameter("keywords", f"{value!r}: the intensifier after ':' must be a number") from None
        words.append(word.strip())
    return tuple(w for w in words if w)


# name -> (values of a repeated parameter) -> fields of ListenOptions
PARSERS: dict[str, Callable[[Sequence[str]], dict]] = {
    "model": lambda v: {"model": v[-1].strip() or None},
    "language": lambda v: {"language": v[-1].strip() or None},
    "detect_language": lambda v: {"detect_language": _bool("detect_language", v[-1])},
    "encoding": lambda v: _encoding(v[-1]),
    "sample_rate": lambda v: {"sample_rate": _int("sample_rate", v[-1], 8000, 48000, " Hz")},
    "channels": lambda v: {"channels": _int("channels", v[-1], 1, MAX_CHANNELS)},
    "interim_results": lambda v: {"interim_results": _bool("interim_results", v[-1])},
    "endpointing": lambda v: _endpointing(v[-1]),
    "utterance_end_ms": lambda v: {"utterance_end_ms": _int("utterance_end_ms", v[-1], MIN_UTTERANCE_END_MS,
                                                            MAX_WINDOW_MS, " ms")},
    "vad_events": lambda v: {"vad_events": _bool("vad_events", v[-1])},
    "keyterm": lambda v: {"keyterm": tuple(t.strip() for t in v if t.strip())},
    "keywords": lambda v: {"keywords": _keywords(v)},
    "diarize": lambda v: {"diarize": _bool("diarize", v[-1])},
    "multichannel": lambda v: {"multichannel": _bool("multichannel", v[-1])},
}


def parse_query(query: Mapping[str, Sequence[str]]) -> ListenOptions:
    """Query parameters (name -> every value given) -> ListenOptions; raises BadParameter."""
    fields: dict = {}
    for name, values in query.items():
        if name in PARSERS:
            fields.update(PARSERS[name](values))
        elif name in OFF_ONLY:
            if _bool(name, values[-1]):
                raise BadParameter(name, OFF_ONLY[name])
        elif name not in HINTS:
            raise BadParameter(name, "this option is not supported by this server (see its README for the "
                                     "Deepgram options it serves)")
    keyterms = fields.pop("keyterm", ()) + fields.pop("keywords", ())
    options = ListenOptions(**fields, keyterms=tuple(dict.fromkeys(keyterms)))
    if options.sample_rate is not None and options.encoding is None:
        raise BadParameter("encoding", "sample_rate is given without encoding; send the encoding with it "
                                       "(e.g. linear16), or neither for containerized audio")
    if options.utterance_end_ms is not None and not options.interim_results:
        raise BadParameter("utterance_end_ms", "needs interim_results=true (as on Deepgram)")
    return options


def model_of(requested: str | None, backend: Backend) -> str:
    """Our model for the ``model`` parameter (Deepgram's names select the default one)."""
    name = (requested or "").strip()
    if not name or name.lower().startswith(DEEPGRAM_MODEL_PREFIXES):
        return backend.default_model
    if name in backend.engines:
        return name
    raise BadParameter("model", f"unknown model {name!r}; this server has {', '.join(backend.engines)} (Deepgram's "
                                f"model names select {backend.default_model})")


def endpointing_of(options: ListenOptions, default: EndpointingOptions, eager_pause_ms: int = 0) -> EndpointingOptions:
    """``endpointing`` (ms of silence that end an utterance) -> the VAD's stop window; the pause
    that makes an early end of turn (Flux), in whole VAD frames."""
    window = default.stop_window_ms
    if options.endpointing_ms is not None:
        frames = -(-options.endpointing_ms // default.frame_ms)  # whole VAD frames, rounded up
        window = min(MAX_WINDOW_MS, frames * default.frame_ms)
    eager = -(-eager_pause_ms // default.frame_ms) * default.frame_ms
    try:
        return endpointing_with(default, stop_window_ms=window, hangover_ms=min(default.hangover_ms, window),
                                eager_pause_ms=eager)
    except InvalidRequest as exc:
        raise BadParameter("endpointing" if not eager else "eager_pause_ms", str(exc)) from None


def live_settings(options: ListenOptions, backend: Backend, *, eager_pause_ms: int = 0) -> RecognitionSettings:
    """The core's settings for a stream (raw encodings need sample_rate; containers carry it)."""
    try:
        language = None if options.detect_language or (options.language or "").lower() == "multi" \
            else options.language
        language_of(language)
    except InvalidRequest as exc:
        raise BadParameter("language", str(exc)) from None
    try:
        return settings_from(
            backend, encoding=options.encoding or deepgram_encoding(None), sample_rate=options.sample_rate or 0,
            channels=options.channels, model=model_of(options.model, backend), language=language,
            key_terms=options.keyterms, word_times=backend.aligner is not None,
            endpointing=endpointing_of(options, backend.limits.endpointing, eager_pause_ms),
            interim_results=options.interim_results, diarization=options.diarize,
            separate_channels=options.multichannel)
    except BadParameter:
        raise
    except InvalidRequest as exc:
        text = str(exc)
        param = ("diarize" if "speaker" in text else "multichannel" if text == SEPARATE_NEEDS_RAW
                 else "keyterm" if "key term" in text else "sample_rate" if "sample rate" in text or "Hz" in text
                 else "channels" if "channel" in text else "encoding" if "encoding" in text else "request")
        raise BadParameter(param, text) from None



# -- Flux (/v2/listen): turn-based, with an early end of turn ---------------------------------------

EAGER_PAUSE_MS = 240  # the pause that makes an EagerEndOfTurn (our option eager_pause_ms changes it)
FLUX_HINTS = frozenset({"eot_threshold", "language_hint", "mip_opt_out", "tag"})


def _float(param: str, value: str, low: float, high: float) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise BadParameter(param, f"must be a number, got {value!r}") from None
    if not low <= number <= high:
        raise BadParameter(param, f"must be {low:g}-{high:g}, got {number:g}")
    return number


FLUX_PARSERS: dict[str, Callable[[Sequence[str]], dict]] = {
    "model": PARSERS["model"],
    "encoding": PARSERS["encoding"],
    "sample_rate": PARSERS["sample_rate"],
    "keyterm": PARSERS["keyterm"],
    "eot_timeout_ms": lambda v: {"endpointing_ms": _int("eot_timeout_ms", v[-1], 500, MAX_WINDOW_MS, " ms")},
    "eager_eot_threshold": lambda v: {"eager": _float("eager_eot_threshold", v[-1], 0.3, 0.9) and True},
    "eager_pause_ms": lambda v: {"eager_pause_ms": _int("eager_pause_ms", v[-1], 30, 5000, " ms")},
}


def parse_flux_query(query: Mapping[str, Sequence[str]]) -> tuple[ListenOptions, int]:
    """``/v2/listen`` parameters -> (options, the pause in ms that makes an EagerEndOfTurn; 0: none)."""
    fields: dict = {"interim_results": True}
    for name, values in query.items():
        if name in FLUX_PARSERS:
            fields.update(FLUX_PARSERS[name](values))
        elif name in ("profanity_filter", "numerals"):
            if _bool(name, values[-1]):
                raise BadParameter(name, OFF_ONLY[name])
        elif name not in FLUX_HINTS:
            raise BadParameter(name, "this option is not supported by this server's /v2/listen")
    eager, pause = fields.pop("eager", False), fields.pop("eager_pause_ms", EAGER_PAUSE_MS)
    keyterms = fields.pop("keyterm", ())
    return ListenOptions(**fields, keyterms=keyterms), pause if eager else 0
