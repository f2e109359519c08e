"""Parsing the ASR model's raw answer: hand-written cases plus parity with the official package."""

from __future__ import annotations

import random
from typing import Any

import pytest

from qwen3_asr_stream.text.transcript import (
    SUPPORTED_LANGUAGES,
    ParsedTranscript,
    collapse_repetitions,
    normalize_language,
    parse_output,
)

# --- hand-written expectations (no oracle needed) ---------------------------------


@pytest.mark.parametrize(
    ("raw", "forced", "expected"),
    [
        ("language English<asr_text>hello world", None, ("English", "hello world")),
        ("  language english<asr_text>  hello  \n", None, ("English", "hello")),
        ("language None<asr_text>", None, ("", "")),
        ("language None<asr_text> stray words", None, ("", "stray words")),
        ("just text, no tag", None, ("", "just text, no tag")),
        ("language Chinese\n<asr_text>你好", None, ("Chinese", "你好")),
        ("\nsome note\nLANGUAGE  chINESE \n<asr_text>你好", None, ("Chinese", "你好")),
        ("no language line<asr_text>text", None, ("", "text")),
        ("language Klingon<asr_text>qapla'", None, ("Klingon", "qapla'")),
        ("hello there", "English", ("English", "hello there")),
        ("language English<asr_text>hi", "French", ("French", "language English<asr_text>hi")),
        ("", None, ("", "")),
        (" \n\t ", "English", ("", "")),
    ],
)
def test_parse_output_cases(raw: str, forced: str | None, expected: tuple[str, str]) -> None:
    assert parse_output(raw, forced) == ParsedTranscript(*expected)


def test_collapse_repetitions_cases() -> None:
    assert collapse_repetitions("哈" * 21) == "哈"
    assert collapse_repetitions("哈" * 20) == "哈" * 20  # at threshold: a char run is kept ...
    assert collapse_repetitions("哈" * 40) == "哈"
    assert collapse_repetitions("thank you " * 25 + "bye") == "thank you bye"
    assert collapse_repetitions("ok " + "ab" * 19 + "!" * 30) == "ok " + "ab" * 19 + "!"
    assert collapse_repetitions("") == ""
    assert collapse_repetitions("abcabcabc", threshold=3) == "abc"
    assert collapse_repetitions("xaaab", threshold=2) == "xab"


def test_collapse_repetitions_many_loops_without_recursion() -> None:
    # The official code recurses once per collapsed loop and overflows the stack here.
    text = ("ab" * 20 + "c") * 1500
    assert collapse_repetitions(text) == "abc" * 1500


def test_collapse_repetitions_rejects_bad_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        collapse_repetitions("aaaa", threshold=0)


def test_normalize_language() -> None:
    assert normalize_language("english") == "English"
    assert normalize_language("  ENGLISH ") == "English"
    assert normalize_language("cHINese") == "Chinese"
    with pytest.raises(ValueError, match="Macedonian"):
        normalize_language("en")
    with pytest.raises(ValueError):
        normalize_language("   ")
    assert len(SUPPORTED_LANGUAGES) == 30
    assert all(normalize_language(name) == name for name in SUPPORTED_LANGUAGES)


# --- parity with the official implementation ----------------------------------------

oracle = pytest.mark.oracle


@pytest.fixture(scope="module")
def official() -> Any:
    return pytest.importorskip("qwen_asr.inference.utils")


_ALPHABET = list("abcde xyz") + list("你好世界") + ["\n", "。", ",", "'", "A", "Z"]
_UNITS = ["a", "ab", "abc", "你好", "ha ", "thank you ", "哈", "\n", "x" * 20, "lo" * 10 + "!", "z" * 21]


def _random_text(rng: random.Random, max_pieces: int = 12) -> str:
    """Text mixing random characters with units repeated around typical thresholds."""
    pieces: list[str] = []
    for _ in range(rng.randint(0, max_pieces)):
        roll = rng.random()
        if roll < 0.4:
            pieces.append("".join(rng.choices(_ALPHABET, k=rng.randint(1, 8))))
        elif roll < 0.7:
            unit = rng.choice(_UNITS)
            pieces.append(unit * rng.choice([1, 2, 3, 4, 5, 18, 19, 20, 21, 22, 30]))
        else:
            unit = "".join(rng.choices(_ALPHABET, k=rng.randint(1, 22)))
            pieces.append(unit * rng.randint(1, 6))
    return "".join(pieces)


@oracle
def test_supported_languages_match(official: Any) -> None:
    assert list(SUPPORTED_LANGUAGES) == official.SUPPORTED_LANGUAGES


@oracle
def test_collapse_repetitions_matches_official_random(official: Any) -> None:
    rng = random.Random(20260101)
    for _ in range(1500):
        text = _random_text(rng)
        threshold = rng.choice([1, 2, 3, 4, 5, 20, 20, 20])
        expected = official.detect_and_fix_repetitions(text, threshold=threshold)
        assert collapse_repetitions(text, threshold) == expected, (text, threshold)


@oracle
def test_collapse_repetitions_matches_official_near_end(official: Any) -> None:
    # Loops that end close to the end of the text, where the official scan stops early.
    for unit in ["a", "ab", "abc", "你好吗"]:
        for reps in range(15, 45):
            for tail in ["", "x", "xy", "x" * 19, "x" * 25]:
                for head in ["", "q", "qq"]:
                    text = head + unit * reps + tail
                    assert collapse_repetitions(text) == official.detect_and_fix_repetitions(text), text


def _random_raw(rng: random.Random) -> str:
    lines: list[str] = []
    for _ in range(rng.randint(0, 3)):
        lines.append(
            rng.choice(
                [
                    "",
                    "  ",
                    "note",
                    "language " + rng.choice(["English", "chinese", "NONE", "None", "KLINGON", "  german "]),
                    "Language  japanese",
                    "languages English",
                    "language",
                    "x language none",
                ]
            )
        )
    meta = rng.choice(["\n", "\r\n", " "]).join(lines)
    tag = rng.choice(["<asr_text>", "<asr_text>", "<ASR_TEXT>", "<asr_text", "", "<asr_text><asr_text>"])
    return rng.choice(["", " ", "\n"]) + meta + tag + _random_text(rng, 6) + rng.choice(["", " ", "\n"])


@oracle
def test_parse_output_matches_official_random(official: Any) -> None:
    rng = random.Random(7)
    for _ in range(3000):
        raw = _random_raw(rng)
        forced = rng.choice([None, None, None, "", "English", "Chinese"])
        language, text = official.parse_asr_output(raw, user_language=forced)
        assert parse_output(raw, forced) == ParsedTranscript(language, text), (raw, forced)
