"""What a client asked for, checked once for every protocol.

Each protocol adapter reads its own messages and calls ``settings_from`` with
plain values; everything a client can get wrong raises ``InvalidRequest`` with a
message that says what to send instead, so the three protocols refuse the same
requests with the same words.

    settings = settings_from(backend, sample_rate=24000, language="en-US", interim_results=True)
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from ..audio.input import SEPARATE_NEEDS_RAW, AudioEncoding, AudioFormat
from ..audio.vad import EndpointingOptions
from ..engine.bias import DEFAULT_BOOST, check_terms
from ..engine.options import update_interval_problem
from ..text.transcript import SUPPORTED_LANGUAGES, normalize_language
from .errors import InvalidRequest, ServerBusy
from .diarization import DiarizationOptions
from .types import Backend, RecognitionSettings

# ISO 639 codes accepted besides the names (BCP-47 tags like "en-US" use the first part).
LANGUAGE_CODES = {
    "zh": "Chinese", "en": "English", "yue": "Cantonese", "ar": "Arabic", "de": "German", "fr": "French",
    "es": "Spanish", "pt": "Portuguese", "id": "Indonesian", "it": "Italian", "ko": "Korean", "ru": "Russian",
    "th": "Thai", "vi": "Vietnamese", "ja": "Japanese", "tr": "Turkish", "hi": "Hindi", "ms": "Malay",
    "nl": "Dutch", "sv": "Swedish", "da": "Danish", "fi": "Finnish", "pl": "Polish", "cs": "Czech",
    "fil": "Filipino", "tl": "Filipino", "fa": "Persian", "el": "Greek", "ro": "Romanian", "hu": "Hungarian",
    "mk": "Macedonian",
}
# The region a bare language gets in a BCP-47 tag we send (Riva's clients expect "en-US", not "en").
_DEFAULT_REGIONS = {
    "zh": "CN", "en": "US", "yue": "HK", "ar": "SA", "de": "DE", "fr": "FR", "es": "ES", "pt": "BR", "id": "ID",
    "it": "IT", "ko": "KR", "ru": "RU", "th": "TH", "vi": "VN", "ja": "JP", "tr": "TR", "hi": "IN", "ms": "MY",
    "nl": "NL", "sv": "SE", "da": "DK", "fi": "FI", "pl": "PL", "cs": "CZ", "fil": "PH", "fa": "IR", "el": "GR",
    "ro": "RO", "hu": "HU", "mk": "MK",
}
_CODE_OF_NAME = {name: code for code, name in LANGUAGE_CODES.items() if code != "tl"}


def language_of(code: str | None) -> str | None:
    """A language name, ISO 639 code or BCP-47 tag -> the model's name; None or "" -> None (detect)."""
    code = (code or "").strip()
    if not code:
        return None
    name = LANGUAGE_CODES.get(code.lower()) or LANGUAGE_CODES.get(code.lower().replace("_", "-").split("-")[0])
    try:
        return normalize_language(name or code)
    except ValueError:
        raise InvalidRequest(f"unknown language {code!r}; use a name or code such as 'English', 'en' or 'en-US' "
                             f"(the server's configuration lists them), or leave it empty to detect") from None


def bcp47_of(name: str) -> str:
    """The model's language name -> a BCP-47 tag ("English" -> "en-US"); "" for a language without a code."""
    code = _CODE_OF_NAME.get(name, "")
    return f"{code}-{_DEFAULT_REGIONS[code]}" if code else ""


def language_choices() -> list[str]:
    """Every spelling ``language_of`` accepts besides the names' case variants."""
    return [*SUPPORTED_LANGUAGES, *sorted(LANGUAGE_CODES)]


def endpointing_with(default: EndpointingOptions, **overrides) -> EndpointingOptions:
    """``default`` with the given fields replaced (None = keep); raises InvalidRequest."""
    values = {name: value for name, value in overrides.items() if value is not None}
    try:
        return dataclasses.replace(default, **values)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None


def settings_from(backend: Backend, *, encoding: AudioEncoding = AudioEncoding.LINEAR16, sample_rate: int,
                  channels: int = 1, model: str | None = None, language: str | None = None, context: str = "",
                  hot_words: Sequence[str] = (), word_times: bool = False,
                  endpointing: EndpointingOptions | None = None, interim_results: bool = False,
                  update_interval_ms: int | None = None, diarization: bool = False, min_speakers: int = 0,
                  max_speakers: int = 0, separate_channels: bool = False, key_terms: Sequence[str] = (),
                  term_boost: float | None = None) -> RecognitionSettings:
    """Check a client's request and fill in the server's defaults; raises InvalidRequest.

    ``diarization``: speaker labels; ``min_speakers`` / ``max_speakers`` 0 = the defaults (1 and
    the server's ``max_speakers``)."""
    limits = backend.limits
    if not sample_rate and encoding.raw:
        raise InvalidRequest("the sample rate is not set; give the audio's rate, 8000 to 48000 Hz")
    try:
        audio = AudioFormat(sample_rate or 0, channels or 1, encoding)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    name = model or backend.default_model
    if name not in backend.engines:
        raise InvalidRequest(f"unknown model {model!r}; this server has {', '.join(backend.engines)}")
    context = "\n".join(part.strip() for part in [context, *hot_words] if part.strip())
    if len(context) > limits.max_context_chars:
        raise InvalidRequest(f"context and hot words have {len(context)} characters; the limit is "
                             f"{limits.max_context_chars}")
    endpointing = endpointing or limits.endpointing
    engine_limit_ms = round(backend.engines[name].options.max_utterance_s * 1000)
    if endpointing.max_utterance_ms > engine_limit_ms:
        raise InvalidRequest(f"endpointing max_utterance_ms {endpointing.max_utterance_ms} exceeds this server's "
                             f"limit of {engine_limit_ms} ms")
    interval = update_interval_ms or limits.update_interval_ms
    problem = update_interval_problem(interval)
    if problem:
        raise InvalidRequest(f"{problem} (or 0 for the default {limits.update_interval_ms})")
    key_terms = tuple(dict.fromkeys(t.strip() for t in key_terms))
    term_boost = DEFAULT_BOOST if term_boost is None else term_boost
    try:
        check_terms(key_terms, term_boost)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if separate_channels and not encoding.raw:
        raise InvalidRequest(SEPARATE_NEEDS_RAW)
    return RecognitionSettings(
        audio=audio, model=name, language=language_of(language), context=context, word_times=word_times,
        endpointing=endpointing, interim_results=interim_results, update_interval_ms=interval,
        separate_channels=separate_channels and audio.channels > 1,
        diarization=diarization_of(backend, diarization, min_speakers, max_speakers),
        key_terms=key_terms, term_boost=term_boost)


def diarization_of(backend: Backend, enabled: bool, min_speakers: int, max_speakers: int
                   ) -> DiarizationOptions | None:
    """The diarization a client asked for (None: off); raises InvalidRequest, or ServerBusy while the
    speaker model is more than ``max_speaker_backlog_s`` behind (the streams it has already take it
    all: one more would only make every stream's finals wait longer)."""
    if not enabled:
        if min_speakers or max_speakers:
            raise InvalidRequest("min_speakers / max_speakers are set but diarization is not enabled; enable it")
        return None
    if backend.speakers is None:
        raise InvalidRequest("speaker diarization needs a speaker model, which this server runs without; "
                             "start it with --speaker-model resemblyzer (or wespeaker-resnet34)")
    limit = backend.limits.max_speakers
    if min_speakers < 0 or max_speakers < 0:
        raise InvalidRequest(f"min_speakers and max_speakers must be 0 (default) or positive, "
                             f"got {min_speakers} and {max_speakers}")
    if max_speakers > limit:
        raise InvalidRequest(f"max_speakers {max_speakers} exceeds this server's limit of {limit} "
                             f"(serve --max-speakers)")
    high = max_speakers or limit
    low = min_speakers or 1
    if low > high:
        raise InvalidRequest(f"min_speakers ({low}) is above max_speakers ({high})")
    behind, most = backend.speakers.backlog_s, backend.limits.max_speaker_backlog_s
    if behind > most:
        raise ServerBusy(f"the speaker model is {behind:.1f} s behind (more than {most:g} s) with the streams it "
                         f"diarizes now; retry later or without diarization (a server with more "
                         f"--speaker-threads, or --speaker-device cuda, keeps up with more)")
    encoder = backend.speakers.encoder  # its thresholds: cosine similarities differ between speaker models
    return DiarizationOptions(min_speakers=low, max_speakers=high, threshold=encoder.threshold,
                              change_threshold=encoder.change_threshold)
