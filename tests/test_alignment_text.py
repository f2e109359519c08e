"""Aligner word units, aligner input and timestamp repair: hand-written cases plus parity
with the official ``Qwen3ForceAlignProcessor``."""

from __future__ import annotations

import random
from typing import Any
import sys

import pytest

from qwen3_asr_stream.text import alignment as alignment_text
from qwen3_asr_stream.text.alignment import (
    MissingLanguageSupport,
    WordTime,
    aligner_input_text,
    repair_timestamps,
    split_words,
    words_with_times,
)

# --- hand-written expectations (no oracle needed) ---------------------------------


def test_split_words_cases() -> None:
    assert split_words("Hello, world! It's 2024.", "English") == ["Hello", "world", "It's", "2024"]
    assert split_words("我爱AI模型v2 ok", "Chinese") == ["我", "爱", "AI", "模", "型", "v2", "ok"]
    assert split_words(" -- ... ", "English") == []
    assert split_words("", "French") == []


def test_aligner_input_text() -> None:
    assert aligner_input_text(["hi", "there"]) == (
        "<|audio_start|><|audio_pad|><|audio_end|>hi<timestamp><timestamp>there<timestamp><timestamp>"
    )
    assert aligner_input_text([]) == "<|audio_start|><|audio_pad|><|audio_end|><timestamp><timestamp>"


def test_repair_timestamps_cases() -> None:
    assert repair_timestamps([]) == []
    assert repair_timestamps([5.0]) == [5]
    assert repair_timestamps([0, 80, 40, 160]) == [0, 80, 80, 160]  # one outlier: nearer neighbour
    # A run of three outliers is interpolated.
    assert repair_timestamps([0, 900, 901, 902, 80, 160, 240, 320]) == [0, 20, 40, 60, 80, 160, 240, 320]
    # Two longest subsequences: the one ending first is kept; trailing outliers copy their left neighbour.
    assert repair_timestamps([0, 900, 901, 902, 80, 160, 240]) == [0, 900, 901, 902, 902, 902, 902]
    assert repair_timestamps([900, 0, 80]) == [0, 0, 80]  # leading outlier copies its right neighbour
    assert repair_timestamps([1.9, -1.9]) == [1, 1]  # int() truncates
    with pytest.raises(ValueError, match="NaN"):
        repair_timestamps([0.0, float("nan")])


def test_words_with_times() -> None:
    times = words_with_times(["a", "b"], [0, 3, 2, 5], segment_ms=80.0)
    assert times == [WordTime("a", 0.0, 0.24), WordTime("b", 0.24, 0.4)]
    assert words_with_times([], [1, 2], segment_ms=80.0) == []
    with pytest.raises(ValueError, match="2 timestamp class ids per word"):
        words_with_times(["a"], [1, 2, 3], segment_ms=80.0)
    with pytest.raises(ValueError, match="segment_ms"):
        words_with_times(["a"], [1, 2], segment_ms=0.0)


def test_korean_runs_and_returns_cleaned_words() -> None:
    pytest.importorskip("soynlp")
    words = split_words("안녕하세요, 반갑습니다! 오늘은 2024년.", "Korean")
    assert words
    assert "".join(words) == "안녕하세요반갑습니다오늘은2024년"
    assert all(ch.isalnum() or ch == "'" for word in words for ch in word)


@pytest.mark.parametrize(
    ("language", "package", "extra"), [("Japanese", "nagisa", "japanese"), ("Korean", "soynlp", "korean")]
)
def test_missing_optional_package(
    monkeypatch: pytest.MonkeyPatch, language: str, package: str, extra: str
) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    monkeypatch.setitem(sys.modules, package + ".tokenizer", None)
    alignment_text._japanese_tokenizer.cache_clear()
    alignment_text._korean_tokenizer.cache_clear()
    try:
        hint = rf"pip install 'qwen3-asr-stream\[{extra}\]'"
        with pytest.raises(MissingLanguageSupport, match=hint) as info:
            split_words("テスト", language)
        assert isinstance(info.value, ImportError)
        assert package in str(info.value)
    finally:
        alignment_text._japanese_tokenizer.cache_clear()
        alignment_text._korean_tokenizer.cache_clear()


# --- parity with the official implementation ----------------------------------------

oracle = pytest.mark.oracle


@pytest.fixture(scope="module")
def official() -> Any:
    aligner = pytest.importorskip("qwen_asr.inference.qwen3_forced_aligner")
    return aligner.Qwen3ForceAlignProcessor()


_TEXTS = [
    "",
    "   \n\t ",
    "Hello, world! It's a test.",
    "Don't stop—believing… “quoted” ‘curly’ (brackets) [x] {y} e-mail foo_bar",
    "In 2024, 3.14 and 1,000,000 people; ４２ fullwidth ½ ² ⅷ",
    "我爱北京天安门。今天是2024年1月1日, we said hello 世界!",
    "混合Chinese和English的句子，包括標點符號：「引號」",
    "Rare ideographs 𠀀𠀁 㐀 豈 and emoji 😀 and kana ひらがな カタカナ",
    "Ça va? Über straße — naïve café",
    "नमस्ते दुनिया, สวัสดีชาวโลก, مرحبا بالعالم",
    "Привет, мир! Γειά σου Κόσμε",
    "tab\tseparated\nnew\nlines  double  spaces",
    "o'clock ''' ' rock'n'roll",
]


@oracle
@pytest.mark.parametrize("text", _TEXTS)
@pytest.mark.parametrize("language", ["English", "Chinese", "german"])
def test_split_words_matches_official(official: Any, text: str, language: str) -> None:
    words, input_text = official.encode_timestamp(text, language)
    assert split_words(text, language) == words
    assert aligner_input_text(words) == input_text


@oracle
def test_split_words_matches_official_random(official: Any) -> None:
    alphabet = list("ab Z9'-.,!?\n\t") + list("中文字") + ["𠀀", "é", "\u0301", "٣", "ー", "・", "\u3000"]
    rng = random.Random(11)
    for _ in range(2000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 30)))
        words, input_text = official.encode_timestamp(text, "English")
        assert split_words(text, "English") == words, text
        assert aligner_input_text(words) == input_text


@oracle
@pytest.mark.parametrize(
    "text",
    ["", "東京に行きました。", "今日は良い天気ですね！ AIモデルv2を使います", "私の名前は「田中」です。2024年"],
)
def test_split_words_japanese_matches_official(official: Any, text: str) -> None:
    pytest.importorskip("nagisa")
    words, input_text = official.encode_timestamp(text, "Japanese")
    assert split_words(text, "japanese") == words
    assert aligner_input_text(words) == input_text


def _random_timestamps(rng: random.Random, n: int) -> list[float]:
    """Mostly rising times with outliers, runs of outliers, and many ties."""
    kind = rng.random()
    if kind < 0.4:  # tiny value range: ties everywhere
        return [float(rng.randint(0, rng.randint(0, 5))) for _ in range(n)]
    if kind < 0.6:  # any order
        return [rng.uniform(-50.0, 50.0) for _ in range(n)]
    values: list[float] = []
    t = 0.0
    while len(values) < n:
        if rng.random() < 0.15:  # a run of outliers
            for _ in range(rng.randint(1, 5)):
                values.append(rng.choice([0.0, 10_000.0, rng.uniform(0, 2 * t + 1)]))
        else:
            t += rng.choice([0.0, 80.0, 160.0, 240.0])
            values.append(t)
    return values[:n]


@oracle
def test_repair_timestamps_matches_official_random(official: Any) -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    for _ in range(4000):
        values = _random_timestamps(rng, rng.randint(1, 60))
        for array in (np.asarray(values, dtype=np.float64), np.asarray(values, dtype=np.float32)):
            assert repair_timestamps(array) == official.fix_timestamp(array), values
        ints = [int(v) for v in values]
        assert repair_timestamps(ints) == official.fix_timestamp(np.asarray(ints)), ints


@oracle
def test_repair_timestamps_matches_official_long(official: Any) -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(5)
    for n in (500, 2000):
        values = np.asarray(_random_timestamps(rng, n), dtype=np.float32)
        assert repair_timestamps(values) == official.fix_timestamp(values)
    ties = np.asarray([float(rng.randint(0, 3)) for _ in range(2000)], dtype=np.float32)
    assert repair_timestamps(ties) == official.fix_timestamp(ties)


@oracle
def test_words_with_times_matches_official(official: Any) -> None:
    torch = pytest.importorskip("torch")
    rng = random.Random(9)
    for _ in range(500):
        words = [f"w{i}" for i in range(rng.randint(1, 30))]
        classes = [max(0, min(4999, int(v / 80))) for v in _random_timestamps(rng, 2 * len(words))]
        # As the official aligner: int64 class ids times the segment length (a float32 tensor).
        timestamp_ms = (torch.tensor(classes) * 80.0).numpy()
        expected = [
            WordTime(item["text"], round(item["start_time"] / 1000, 3), round(item["end_time"] / 1000, 3))
            for item in official.parse_timestamp(words, timestamp_ms)
        ]
        assert words_with_times(words, classes, segment_ms=80.0) == expected
