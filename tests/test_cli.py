"""The command line end to end: a tiny checkpoint and a synthesized WAV file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from conftest import run_cli, synthesize


@pytest.fixture(scope="module")
def speech(espeak, tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    wav = synthesize(espeak, "the quick brown fox jumps over the lazy dog", folder / "fox.wav")
    # The same speech as 44.1 kHz stereo FLAC: read, downmixed and resampled.
    audio, rate = soundfile.read(str(wav), dtype="float32")
    import soxr

    stereo = np.stack([audio, audio * 0.5], axis=1)
    flac = folder / "fox.flac"
    soundfile.write(str(flac), soxr.resample(stereo, rate, 44100), 44100)
    return wav, flac


def test_transcribe_json_with_words(checkpoints, speech):
    wav, flac = speech
    result = run_cli("transcribe", str(wav), str(flac), "--model", str(checkpoints["asr"]),
                     "--aligner", str(checkpoints["aligner"]), "--language", "English",
                     "--max-new-tokens", "16", "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in lines] == [str(wav), str(flac)]
    for record in lines:
        assert set(record) == {"file", "language", "text", "words"}
        assert record["language"] == "English"
        for word in record["words"]:
            assert set(word) == {"text", "start", "end"} and 0 <= word["start"] <= word["end"]


def test_transcribe_text_output_matches_the_api(checkpoints, speech):
    from qwen3_asr_stream.audio.files import read_audio
    from qwen3_asr_stream.offline import TranscribeOptions, Transcriber

    wav, _ = speech
    result = run_cli("transcribe", str(wav), "--model", str(checkpoints["asr"]), "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr
    expected = Transcriber.from_pretrained(str(checkpoints["asr"])).transcribe(
        [read_audio(wav)], TranscribeOptions(max_new_tokens=12))[0]
    from qwen3_asr_client.cli import printable

    assert result.stdout == f"{wav}\t[{expected.language or 'none'}]\t{printable(expected.text)}\n"


def test_align_subcommand(checkpoints, speech):
    wav, _ = speech
    result = run_cli("align", str(wav), "--text", "the quick brown fox", "--language", "english",
                     "--aligner", str(checkpoints["aligner"]), "--json")
    assert result.returncode == 0, result.stderr
    words = json.loads(result.stdout)["words"]
    assert [w["text"] for w in words] == ["the", "quick", "brown", "fox"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)


def test_errors_are_clear(checkpoints, speech, tmp_path):
    wav, _ = speech
    missing = run_cli("transcribe", str(tmp_path / "none.wav"), "--model", str(checkpoints["asr"]))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    bad_language = run_cli("transcribe", str(wav), "--model", str(checkpoints["asr"]), "--language", "Klingon")
    assert bad_language.returncode == 2 and "supported languages: Chinese" in bad_language.stderr
    wrong_model = run_cli("transcribe", str(wav), "--model", str(checkpoints["aligner"]))
    assert wrong_model.returncode == 2 and "forced-aligner checkpoint" in wrong_model.stderr
