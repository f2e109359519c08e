"""The text side of forced alignment: word units, aligner input, timestamp repair.

Qwen3-ForcedAligner reads the audio plus the transcript with two ``<timestamp>``
slots after every word, and predicts at each slot a class id; class times the
segment length (80 ms for the released checkpoint) is the word's start (first
slot) or end (second slot). This module

- splits a transcript into the word units the aligner was trained on
  (split_words),
- writes the aligner's text input (aligner_input_text),
- repairs predicted times that go backwards (repair_timestamps) and turns class
  ids into word times in seconds (words_with_times).

Each function matches the official ``qwen-asr`` package
(``Qwen3ForceAlignProcessor`` in ``inference/qwen3_forced_aligner.py``); the
parity tests in ``tests/test_alignment_text.py`` compare against it. The one
deliberate difference is Korean, explained at _korean_tokenizer.

Pure Python: no torch. Japanese needs the optional ``nagisa`` package and Korean
the optional ``soynlp`` package, both imported on first use.
"""

from __future__ import annotations

import math
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "MissingLanguageSupport",
    "WordTime",
    "aligner_input_text",
    "repair_timestamps",
    "split_words",
    "words_with_times",
]

AUDIO_PLACEHOLDER = "<|audio_start|><|audio_pad|><|audio_end|>"  # pad expands to all audio tokens
TIMESTAMP_TOKEN = "<timestamp>"
WORD_SUFFIX = TIMESTAMP_TOKEN * 2  # start slot, end slot

# Runs of at most this many out-of-order timestamps copy their nearest in-order
# neighbour; longer runs are interpolated linearly.
_MAX_COPIED_RUN = 2

# Code point ranges of CJK ideographs that become one word unit each (the same
# ranges as the official aligner).
_CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0x3400, 0x4DBF),  # Extension A
    (0x20000, 0x2A6DF),  # Extension B
    (0x2A700, 0x2B73F),  # Extension C
    (0x2B740, 0x2B81F),  # Extension D
    (0x2B820, 0x2CEAF),  # Extension E
    (0xF900, 0xFAFF),  # Compatibility Ideographs
)


class MissingLanguageSupport(ImportError):
    """Word splitting for this language needs an optional package that is not installed."""


@dataclass(frozen=True, slots=True)
class WordTime:
    """One aligned word unit; ``start`` and ``end`` in seconds, rounded to milliseconds."""

    text: str
    start: float
    end: float


# --- word units -------------------------------------------------------------


def _is_kept_char(ch: str) -> bool:
    """Letters (any L* category), numbers (any N*) and the ASCII apostrophe.

    Everything else is dropped, including combining marks (M*), as in the
    official aligner.
    """
    return ch == "'" or unicodedata.category(ch)[0] in "LN"


def _clean(token: str) -> str:
    return "".join(ch for ch in token if _is_kept_char(ch))


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def _split_cjk(token: str) -> list[str]:
    """``"AI模型v2"`` -> ``["AI", "模", "型", "v2"]``: each ideograph alone, other runs kept."""
    units: list[str] = []
    run_start = 0
    for pos, ch in enumerate(token):
        if _is_cjk(ch):
            if pos > run_start:
                units.append(token[run_start:pos])
            units.append(ch)
            run_start = pos + 1
    if run_start < len(token):
        units.append(token[run_start:])
    return units


def _split_on_whitespace(text: str) -> list[str]:
    units: list[str] = []
    for token in text.split():
        cleaned = _clean(token)
        if cleaned:
            units.extend(_split_cjk(cleaned))
    return units


def _missing(language: str, package: str, extra: str) -> MissingLanguageSupport:
    return MissingLanguageSupport(
        f"{language} word timestamps need the optional {package!r} package: "
        f"pip install 'qwen3-asr-stream[{extra}]'"
    )


@lru_cache(maxsize=1)
def _japanese_tokenizer() -> Callable[[str], list[str]]:
    try:
        import nagisa  # type: ignore[import-untyped]  # slow import: loads its model
    except ImportError as exc:
        raise _missing("Japanese", "nagisa", "japanese") from exc
    return lambda text: list(nagisa.tagging(text).words)


@lru_cache(maxsize=1)
def _korean_tokenizer() -> Callable[[str], list[str]]:
    try:
        from soynlp.tokenizer import LTokenizer  # type: ignore[import-untyped]
    except ImportError as exc:
        raise _missing("Korean", "soynlp", "korean") from exc
    # Differs from the official aligner: it scores LTokenizer's left parts with a
    # Korean word list bundled inside qwen-asr, which we do not ship. With an empty
    # score table LTokenizer keeps every whitespace-separated eojeol whole, so a
    # word and its attached particle form one unit here, where the official
    # dictionary may split them in two.
    tokenizer = LTokenizer(scores={})
    return lambda text: list(tokenizer.tokenize(text))


def split_words(text: str, language: str) -> list[str]:
    """Split a transcript into the aligner's word units.

    - Japanese (case-insensitive name): nagisa's words;
    - Korean: soynlp LTokenizer's pieces (see _korean_tokenizer for how this
      differs from the official package);
    - any other language: whitespace-separated tokens.

    Every unit keeps only letters, digits and ``'``; units left empty are
    dropped. For the whitespace rule, each CJK ideograph also becomes a unit of
    its own (``"我爱AI"`` -> ``["我", "爱", "AI"]``).

    Raises:
        MissingLanguageSupport: Japanese or Korean without its optional package.
    """
    language = language.lower()
    if language == "japanese":
        pieces = _japanese_tokenizer()(text)
    elif language == "korean":
        pieces = _korean_tokenizer()(text)
    else:
        return _split_on_whitespace(text)
    return [cleaned for cleaned in map(_clean, pieces) if cleaned]


def aligner_input_text(words: Sequence[str]) -> str:
    """The aligner's text input: audio placeholder, then each word followed by two timestamp slots.

    ``["hi", "there"]`` ->
    ``"<|audio_start|><|audio_pad|><|audio_end|>hi<timestamp><timestamp>there<timestamp><timestamp>"``.
    With no words the two slots still follow the placeholder, as in the official code.
    """
    return AUDIO_PLACEHOLDER + WORD_SUFFIX.join(words) + WORD_SUFFIX


# --- timestamp repair ---------------------------------------------------------


def _kept_subsequence(values: Sequence[float]) -> list[int]:
    """Indices of the longest non-decreasing subsequence of ``values`` the official code keeps.

    The official dynamic programme is O(n^2): ``best[i]`` is the length of the
    longest non-decreasing subsequence ending at ``i``; ``parent[i]`` is the
    first ``j < i`` (scanning upwards, replacing only on strict improvement)
    with ``values[j] <= values[i]`` and maximal ``best[j]``; the chain is traced
    back from the first ``i`` of maximal ``best[i]``. This computes the same
    chain in O(n log n).

    Group indices by level ``best[i]``. Within a level, values strictly decrease
    with the index (if ``j < k`` had ``values[j] <= values[k]``, ``best[k]``
    would exceed ``best[j]``). Hence

    - ``best[i] - 1`` = the number of levels whose smallest value, which is the
      value of their latest member, is ``<= values[i]`` (patience sorting), and
    - the members of level ``best[i] - 1`` with a value ``<= values[i]`` form a
      suffix of that level; its first member is the smallest such index, i.e.
      the official ``parent[i]``, found by binary search.

    The first index of maximal level is the first member of the last level.
    """
    level_members: list[list[int]] = []  # indices per level, in increasing order
    level_negated: list[list[float]] = []  # -values of those members: increasing
    level_floor: list[float] = []  # latest (smallest) value per level: non-decreasing
    parent: list[int] = []
    for i, value in enumerate(values):
        level = bisect_right(level_floor, value)
        if level:
            below = level - 1
            first_fit = bisect_left(level_negated[below], -value)
            parent.append(level_members[below][first_fit])
        else:
            parent.append(-1)
        if level == len(level_floor):
            level_members.append([])
            level_negated.append([])
            level_floor.append(value)
        level_members[level].append(i)
        level_negated[level].append(-value)
        level_floor[level] = value
    if not level_members:
        return []
    chain: list[int] = []
    i = level_members[-1][0]
    while i != -1:
        chain.append(i)
        i = parent[i]
    chain.reverse()
    return chain


def repair_timestamps(values: Sequence[float]) -> list[int]:
    """Make predicted times non-decreasing, exactly as the official ``fix_timestamp``.

    The longest non-decreasing subsequence is kept (the same one the official
    code picks; see _kept_subsequence). Every maximal run of other positions
    is then replaced, using its in-order neighbours on either side:

    - a run of one or two copies the nearer neighbour (the left one on a tie);
    - a longer run is filled by linear interpolation between the neighbours;
    - at either end of the sequence the only existing neighbour is copied.

    Finally every value is truncated to int. An empty input gives ``[]`` (the
    official code raises). Runs in O(n log n).

    Raises:
        ValueError: a value is NaN.
    """
    data = [float(v) for v in values]
    if any(math.isnan(v) for v in data):
        raise ValueError("timestamps must not contain NaN")
    n = len(data)
    in_order = [False] * n
    for i in _kept_subsequence(data):
        in_order[i] = True

    result = data[:]
    i = 0
    while i < n:
        if in_order[i]:
            i += 1
            continue
        j = i
        while j < n and not in_order[j]:
            j += 1
        # Runs are maximal, so i - 1 and j are in order wherever they exist; at
        # least one exists because the kept subsequence is never empty.
        left = data[i - 1] if i > 0 else None
        right = data[j] if j < n else None
        for k in range(i, j):
            if left is None:
                assert right is not None
                result[k] = right
            elif right is None:
                result[k] = left
            elif j - i <= _MAX_COPIED_RUN:
                result[k] = left if k - (i - 1) <= j - k else right
            else:
                step = (right - left) / (j - i + 1)
                result[k] = left + step * (k - i + 1)
        i = j
    return [int(v) for v in result]


def words_with_times(
    words: Sequence[str], timestamp_classes: Sequence[int], segment_ms: float
) -> list[WordTime]:
    """Word times from the aligner's argmax class ids at the ``<timestamp>`` slots.

    Slot ``2 * w`` is the start and ``2 * w + 1`` the end of word ``w``; a class
    id times ``segment_ms`` is milliseconds. The times are repaired with
    repair_timestamps, then converted to seconds rounded to 3 decimals, as in
    the official aligner (whose times match these exactly when ``segment_ms`` is
    a whole number, as it is for the released checkpoint: 80).

    Raises:
        ValueError: ``segment_ms`` is not positive, or the number of class ids
            is not two per word (with no words, any count is accepted and the
            result is empty).
    """
    if not segment_ms > 0:
        raise ValueError(f"segment_ms must be positive, got {segment_ms}")
    if not words:
        return []
    if len(timestamp_classes) != 2 * len(words):
        raise ValueError(
            f"expected 2 timestamp class ids per word ({2 * len(words)} for "
            f"{len(words)} words), got {len(timestamp_classes)}"
        )
    ms = repair_timestamps([int(c) * segment_ms for c in timestamp_classes])
    return [
        WordTime(text=word, start=round(ms[2 * w] / 1000.0, 3), end=round(ms[2 * w + 1] / 1000.0, 3))
        for w, word in enumerate(words)
    ]


def clamp_word_times(words: Sequence[WordTime], start_ms: int, end_ms: int) -> list[tuple[str, int, int]]:
    """Aligner word times (s from the start of the aligned audio) as ``(text, start, end)`` in ms
    from the start of the recording, where the aligned audio spans ``start_ms``-``end_ms``.

    Each time is clamped to that span and the starts are made non-decreasing (each
    end at or after its start): the aligner predicts each time independently and may
    overshoot the audio it was given (random weights put words minutes past its end).
    The one rule for streams, unary recognition and offline transcription and alignment.
    """
    if end_ms < start_ms:
        raise ValueError(f"the aligned audio ends ({end_ms} ms) before it starts ({start_ms} ms)")
    out, floor = [], start_ms
    for w in words:
        start = min(max(start_ms + round(w.start * 1000), floor), end_ms)
        end = min(max(start_ms + round(w.end * 1000), start), end_ms)
        out.append((w.text, start, end))
        floor = start
    return out


def unit_offsets(text: str, units: Sequence[str]) -> list[int]:
    """Where each word unit (``split_words`` of ``text``) starts in ``text``: its characters are
    found in order (units drop punctuation and split ideographs, so they are a subsequence of the
    text's characters); a unit not found starts at the end of the text."""
    offsets, at = [], 0
    for unit in units:
        first = text.find(unit[:1], at) if unit else -1
        if first < 0:
            offsets.append(len(text))
            continue
        offsets.append(first)
        pos = first
        for ch in unit:
            found = text.find(ch, pos)
            if found < 0:
                break
            pos = found + 1
        at = pos
    return offsets

