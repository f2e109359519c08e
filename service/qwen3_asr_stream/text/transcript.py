"""Turning the ASR model's raw decoded text into a language and a transcript.

The model answers ``language English<asr_text>the transcript`` (or
``language None<asr_text>`` when it heard no speech). This module splits that
answer, normalises the language name and repairs the runaway repetition loops
that greedy decoding sometimes produces. Every function here gives the same
result as its counterpart in the official ``qwen-asr`` package (its
``inference/utils.py``); the parity tests in ``tests/test_transcript.py`` check
that against the installed package.

Pure Python: no torch, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "SUPPORTED_LANGUAGES",
    "ParsedTranscript",
    "collapse_repetitions",
    "normalize_language",
    "parse_output",
]

# The languages Qwen3-ASR names in its output (and accepts as a forced language),
# in the order the official package lists them.
SUPPORTED_LANGUAGES: tuple[str, ...] = (
    "Chinese",
    "English",
    "Cantonese",
    "Arabic",
    "German",
    "French",
    "Spanish",
    "Portuguese",
    "Indonesian",
    "Italian",
    "Korean",
    "Russian",
    "Thai",
    "Vietnamese",
    "Japanese",
    "Turkish",
    "Hindi",
    "Malay",
    "Dutch",
    "Swedish",
    "Danish",
    "Finnish",
    "Polish",
    "Czech",
    "Filipino",
    "Persian",
    "Greek",
    "Romanian",
    "Hungarian",
    "Macedonian",
)

ASR_TEXT_TAG = "<asr_text>"  # separates the metadata from the transcript
_LANGUAGE_PREFIX = "language "  # metadata line, compared case-insensitively
_NO_SPEECH_MARKER = "language none"  # searched for anywhere in the lower-cased metadata

# Longest repeated unit (in characters) that collapse_repetitions looks for.
MAX_REPEAT_UNIT = 20


@dataclass(frozen=True, slots=True)
class ParsedTranscript:
    """The model's answer, split.

    ``language`` is the canonical language name (e.g. ``"English"``), or ``""``
    when the model gave none or said ``None`` (no speech).
    """

    language: str
    text: str


def _canonical_case(name: str) -> str:
    """``"cHINese"`` -> ``"Chinese"``: first character upper case, the rest lower case.

    Leading and trailing whitespace is dropped; an empty name raises ValueError.
    """
    stripped = name.strip()
    if not stripped:
        raise ValueError("language name is empty")
    return stripped[:1].upper() + stripped[1:].lower()


def normalize_language(name: str) -> str:
    """Return the canonical spelling of a supported language name.

    Only the case is normalised (``"english"`` and ``"ENGLISH"`` become
    ``"English"``); abbreviations such as ``"en"`` are not recognised, as in the
    official package.

    Raises:
        ValueError: the name is empty or not one of SUPPORTED_LANGUAGES; the
            message lists the supported names.
    """
    canonical = _canonical_case(name)
    if canonical not in SUPPORTED_LANGUAGES:
        raise ValueError(
            f"unsupported language {name!r}; supported languages: {', '.join(SUPPORTED_LANGUAGES)}"
        )
    return canonical


@lru_cache(maxsize=8)
def _long_run_pattern(threshold: int) -> re.Pattern[str]:
    # One character followed by at least `threshold` copies of itself, i.e. a run
    # longer than `threshold`. DOTALL so that runs of newlines count too.
    return re.compile(r"(.)\1{%d,}" % threshold, re.DOTALL)


def _collapse_char_runs(text: str, threshold: int) -> str:
    """Replace every run of one character longer than ``threshold`` by a single copy."""
    return _long_run_pattern(threshold).sub(r"\1", text)


def _repeated_unit_at(text: str, i: int, threshold: int) -> int:
    """Length of the shortest unit starting at ``i`` that repeats ``threshold`` times, or 0."""
    n = len(text)
    first = text[i]
    for unit in range(1, MAX_REPEAT_UNIT + 1):
        span = unit * threshold  # characters covered by `threshold` copies
        if i + span > n:
            return 0
        # Cheap rejection: a second copy must start with the same character.
        if threshold > 1 and text[i + unit] != first:
            continue
        # `threshold` copies of text[i:i+unit] <=> text[i:i+span] has period `unit`.
        if text[i + unit : i + span] == text[i : i + span - unit]:
            return unit
    return 0


def _collapse_unit_repeats(text: str, threshold: int) -> str:
    """Collapse units of 1..MAX_REPEAT_UNIT characters repeated ``threshold`` times or more.

    Scanning left to right, at each position the shortest unit that repeats at
    least ``threshold`` times back to back is replaced by one copy of itself, and
    the scan resumes after the last copy. A position is only examined while at
    least ``2 * threshold`` characters remain from it (whatever the unit length),
    which is the official package's rule and is kept for identical results.

    The official code restarts itself recursively on the rest of the text after
    every collapse (copying the rest each time, and failing with RecursionError
    after about a thousand collapses); restarting on a suffix is the same as
    continuing the scan at that offset, so this version is a single loop.
    """
    n = len(text)
    last_start = n - 2 * threshold  # final position that is examined
    pieces: list[str] = []
    copied_upto = 0  # text[:copied_upto] is already accounted for in `pieces`
    i = 0
    while i <= last_start:
        unit = _repeated_unit_at(text, i, threshold)
        if not unit:
            i += 1
            continue
        pattern = text[i : i + unit]
        end = i + unit * threshold
        while text.startswith(pattern, end):
            end += unit
        pieces.append(text[copied_upto : i + unit])
        copied_upto = i = end
    pieces.append(text[copied_upto:])
    return "".join(pieces)


def collapse_repetitions(text: str, threshold: int = 20) -> str:
    """Repair decoding loops such as ``"哈哈哈哈..."`` or ``"thank you thank you ..."``.

    First every run of a single character longer than ``threshold`` becomes one
    character; then every unit of 1 to 20 characters repeated ``threshold`` times
    or more in a row becomes one copy. Results are identical to the official
    ``detect_and_fix_repetitions`` for every ``threshold >= 1``.

    Raises:
        ValueError: ``threshold`` is below 1 (the official code never returns then).
    """
    if threshold < 1:
        raise ValueError(f"threshold must be at least 1, got {threshold}")
    return _collapse_unit_repeats(_collapse_char_runs(text, threshold), threshold)


def parse_output(raw: str, forced_language: str | None) -> ParsedTranscript:
    """Split the model's decoded answer into language and transcript.

    Accepted shapes (the same as the official ``parse_asr_output``):

    - ``"language Chinese<asr_text>..."``: language and text;
    - metadata over several lines before ``<asr_text>``: the first line starting
      with ``language `` names the language;
    - ``"language None<asr_text>"``: no speech; language ``""`` (any text that
      still follows is kept);
    - no ``<asr_text>`` tag: the whole answer is text, language ``""``.

    Repetition loops are collapsed first (see collapse_repetitions). When the
    caller forced a language, the prompt already ended with the tag, so the
    whole answer is text and ``forced_language`` is returned unchanged (pass a
    canonical name, e.g. from normalize_language). The language named by the
    model is case-normalised but not checked against SUPPORTED_LANGUAGES.
    """
    stripped = raw.strip()
    if not stripped:
        return ParsedTranscript(language="", text="")
    text = collapse_repetitions(stripped)
    if forced_language:
        return ParsedTranscript(language=forced_language, text=text)

    meta, tag, body = text.partition(ASR_TEXT_TAG)
    if not tag:
        return ParsedTranscript(language="", text=text.strip())
    body = body.strip()
    if _NO_SPEECH_MARKER in meta.lower():
        return ParsedTranscript(language="", text=body)

    language = ""
    for line in meta.splitlines():
        line = line.strip()
        if line.lower().startswith(_LANGUAGE_PREFIX):
            name = line[len(_LANGUAGE_PREFIX) :].strip()
            if name:
                language = _canonical_case(name)
            break
    return ParsedTranscript(language=language, text=body)
