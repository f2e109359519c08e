"""Offline transcribe / align on empty and very short files, and word times clamped to the audio."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile

from conftest import run_cli, tone_mix

from qwen3_asr_client.cli import TranscriptPrinter, printable
from qwen3_asr_client.results import Result, Word
from qwen3_asr_stream.engine.aligner import AlignRequest
from qwen3_asr_stream.text.alignment import WordTime, clamp_word_times
from qwen3_asr_stream.offline import TranscribeOptions, Transcriber


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_audio")
    paths = {}
    for name, samples in {"empty": 0, "5ms": 80, "5s": 80000}.items():
        audio = tone_mix(samples / 16000, seed=3) if samples else np.zeros(0, np.float32)
        paths[name] = folder / f"{name}.wav"
        soundfile.write(str(paths[name]), audio, 16000, subtype="PCM_16")
    return paths


def no_traceback(result) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_transcribe_empty_and_5ms_files(checkpoints, files):
    result = run_cli("transcribe", str(files["empty"]), str(files["5ms"]), "--model", str(checkpoints["asr"]),
                     "--aligner", str(checkpoints["aligner"]), "--max-new-tokens", "8", "--json")
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert f"{files['empty']} has no audio; its result is empty" in result.stderr
    empty, short = [json.loads(line) for line in result.stdout.splitlines()]
    assert (empty["file"], empty["text"], empty["language"], empty["words"]) == (str(files["empty"]), "", "", [])
    assert short["file"] == str(files["5ms"])
    for word in short["words"]:
        assert 0 <= word["start"] <= word["end"] <= 0.005, word


def test_align_an_empty_file_is_a_clear_error(checkpoints, files):
    result = run_cli("align", str(files["empty"]), "--text", "hello there", "--language", "English",
                     "--aligner", str(checkpoints["aligner"]))
    no_traceback(result)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"qwen3-asr-stream align: error: {files['empty']} has no audio: "
                                     "there is nothing to align the text to")


def test_align_a_5ms_file(checkpoints, files):
    result = run_cli("align", str(files["5ms"]), "--text", "hello there", "--language", "English",
                     "--aligner", str(checkpoints["aligner"]), "--json")
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    words = json.loads(result.stdout)["words"]
    assert [w["text"] for w in words] == ["hello", "there"]
    for word in words:
        assert 0 <= word["start"] <= word["end"] <= 0.005, word


def test_offline_word_times_stay_inside_the_audio(checkpoints, files):
    from qwen3_asr_stream.audio.files import read_audio

    transcriber = Transcriber.from_pretrained(str(checkpoints["asr"]), str(checkpoints["aligner"]))
    audio = read_audio(files["5s"])
    options = TranscribeOptions(word_timestamps=True, max_new_tokens=16)
    (result,) = transcriber.transcribe([audio], options)
    raw = transcriber.aligner.align([AlignRequest(audio, result.text, result.language or "English")])[0]
    # The precondition: the random aligner puts words past the end of the audio, so clamping is exercised.
    assert result.words and max(w.end for w in raw) > 5.0, raw
    for word in result.words:
        assert 0 <= word.start <= word.end <= 5.0, word
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)


def test_clamp_word_times():
    words = [WordTime("a", 0.1, 0.3), WordTime("b", 0.05, 0.25), WordTime("c", 5.0, 9.0), WordTime("d", 0.4, 0.2)]
    assert clamp_word_times(words, 1000, 3000) == [("a", 1100, 1300), ("b", 1100, 1250), ("c", 3000, 3000),
                                                   ("d", 3000, 3000)]
    assert clamp_word_times([WordTime("x", 0.0, 0.001)], 0, 0) == [("x", 0, 0)]
    with pytest.raises(ValueError, match="ends"):
        clamp_word_times(words, 10, 5)


def test_control_characters_are_shown_not_obeyed():
    assert printable("plain text, é 我") == "plain text, é 我"
    assert printable("a\x1b[2Jb\rc\nd\x9be\x7f") == "a\\x1b[2Jb\\rc\\nd\\x9be\\x7f"
    out = io.StringIO()
    printer = TranscriptPrinter(out, live=True)
    base = dict(stability=1.0, stable_text="", unstable_text="", language="", utterance_index=0, start_ms=0,
                end_ms=1000, audio_processed_ms=1000, latency_ms=1, end_reason="")
    printer.handle(Result(transcript="hi\x1b]0;owned\x07", is_final=False, words=(), **base))
    printer.handle(Result(transcript="bye\x1b[31m", is_final=True, words=(Word("bye\x1b[31m", 0, 500),), **base))
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "hi\\x1b]0;owned\\x07" in text and "bye\\x1b[31m[0.00-0.50]" in text
