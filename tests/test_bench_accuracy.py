"""The accuracy harness (benchmarks/bench_accuracy.py) on synthesized speech with random weights:
the numbers are meaningless, the plumbing is not: every column is there, the streamed finals
equal offline transcription, and the official policy without a prefix is offline decoding."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, synthesize

sys.path.insert(0, str(ROOT / "benchmarks"))

PHRASES = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
           "hello world, this is a test of streaming recognition."]
SYSTEMS = ["offline", "finals", "last interim", "official policy (2 s, rollback 5, 4 unfixed)", "finals vs offline"]


@pytest.fixture(scope="module")
def speech_folder(espeak, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    for i, text in enumerate(PHRASES):
        synthesize(espeak, text, folder / f"s{i}.wav")
        (folder / f"s{i}.txt").write_text(text + "\n")
    return folder


@pytest.mark.slow
def test_the_harness_reports_every_column_and_finals_equal_offline(checkpoints, speech_folder, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_accuracy.py"), "--model", str(checkpoints["asr"]),
         "--folder", str(speech_folder), "--language", "English", "--max-tokens", "40",
         # random weights loop; the engine's loop guard would cut what offline decoding keeps
         "--repetition-limit", "0", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "accuracy.json").read_text())
    summary, rows = record["summary"], record["recordings"]
    assert summary["recordings"] == 3 and summary["metric"] == "WER"
    assert list(summary["rates"]) == SYSTEMS
    for name in SYSTEMS[:4]:
        assert summary["rates"][name]["units"] == sum(len(p.split()) for p in PHRASES)
    assert summary["rates"]["finals vs offline"]["rate"] == 0.0
    assert summary["rates"]["finals vs offline"]["units"] > 0  # there was text to compare
    for row in rows:
        assert row["final"] == row["offline"]
        assert row["official_policy"] == row["offline"]  # under 4 chunks: no prefix, all audio: offline decoding
        assert row["interims"] >= 1 and len(row["interim_latency_ms"]) == row["interims"]
        assert all(t >= 0 for t in row["interim_latency_ms"])
        assert len(row["official_chunk_ms"]) == int(row["seconds"] // 2) + (row["seconds"] % 2 > 0)
    assert summary["interim_latency_ms"]["interims"] == sum(r["interims"] for r in rows)
    for column in ("WER %", "official chunk p50 / p95 ms", "stable text revised by the final"):
        assert column in proc.stdout


def test_the_official_policy_decodes_each_chunk_after_the_rolled_back_text(checkpoints, speech_folder):
    from bench_accuracy import official_policy

    from qwen3_asr_stream.audio.files import read_audio
    from qwen3_asr_stream.checkpoint import load_pretrained

    model, tokenizer = load_pretrained(str(checkpoints["asr"]))
    audio = read_audio(speech_folder / "s2.wav")
    chunks = len(audio) // 32000
    assert chunks >= 1
    text, times = official_policy(model, tokenizer, audio, "English", max_tokens=12, unfixed=0)
    assert isinstance(text, str) and len(times) == chunks + 1
    fixed, _ = official_policy(model, tokenizer, audio, "English", max_tokens=12, unfixed=99)
    assert isinstance(fixed, str)


def test_normalization_and_error_rates():
    from bench_accuracy import error_rate, normalize

    assert normalize("Hello, World!  Don't  STOP.", characters=False) == "hello world don't stop"
    assert normalize("「你好，世界」", characters=True) == "你好世界"
    assert normalize("ＡＢＣ 'quoted'", characters=False) == "abc quoted"
    wer = error_rate(["the cat sat", "a b"], ["the bat sat", "a b c"], characters=False)
    assert wer["units"] == 5 and wer["rate"] == pytest.approx(2 / 5)  # one substitution, one insertion
    cer = error_rate(["你好世界"], ["你好"], characters=True)
    assert cer["rate"] == pytest.approx(0.5) and cer["deletions"] == 2
    assert error_rate([""], ["noise"], characters=False)["units"] == 0  # empty references are left out
