"""`serve` checks what it can before loading a model: one line of error, no traceback, exit 2."""

from __future__ import annotations

import socket

import pytest

from conftest import run_cli, serve

pytest.importorskip("webrtcvad")


def refused(*args: str) -> str:
    """Run serve with ``args``; it must exit 2 with one line, before loading any model."""
    process = serve(*args)
    out, _ = process.communicate(timeout=120)
    lines = out.strip().splitlines()
    assert process.returncode == 2, out
    assert len(lines) == 1 and lines[0].startswith("qwen3-asr-stream serve: error: "), out
    assert " INFO " not in out  # no "loading ..." log line: nothing was loaded
    return lines[0]


@pytest.fixture(scope="module")
def listening():
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def models(checkpoints, *extra: str) -> list[str]:
    return ["--model", str(checkpoints["asr"]), "--aligner", str(checkpoints["aligner"]), "--device", "cpu", *extra]


def test_port_in_use(checkpoints, listening):
    line = refused(*models(checkpoints, "--port", str(listening)))
    assert f"--port {listening} on 127.0.0.1 cannot be used (Address already in use)" in line


def test_metrics_port_in_use(checkpoints, listening):
    line = refused(*models(checkpoints, "--port", "0", "--metrics-port", str(listening)))
    assert f"--metrics-port {listening} on 127.0.0.1 cannot be used" in line


def test_unknown_host(checkpoints):
    assert "is not an address of this machine" in refused(*models(checkpoints, "--host", "no-such-host.invalid"))


def test_tls_files(checkpoints, tmp_path):
    not_pem = tmp_path / "cert.txt"
    not_pem.write_text("hello")
    line = refused(*models(checkpoints, "--port", "0", "--tls-cert", str(not_pem), "--tls-key", str(not_pem)))
    assert "--tls-cert" in line and "is not a PEM file" in line
    line = refused(*models(checkpoints, "--port", "0", "--tls-cert", str(tmp_path), "--tls-key", str(not_pem)))
    assert "is not a readable file" in line
    line = refused(*models(checkpoints, "--port", "0", "--tls-cert", str(not_pem)))
    assert "tls_cert and tls_key go together" in line


def test_utterances_longer_than_the_aligner_can_time(checkpoints):
    line = refused(*models(checkpoints, "--port", "0", "--max-utterance-ms", "180001"))
    assert "max-utterance-ms 180001 is longer than the aligner can time (180000 ms)" in line
    assert "--no-aligner" in line


def test_checkpoint_kinds_and_missing_folders(checkpoints, tmp_path):
    line = refused("--model", str(checkpoints["aligner"]), "--no-aligner", "--port", "0")
    assert "is a forced-aligner checkpoint; pass an ASR checkpoint" in line
    line = refused("--model", str(checkpoints["asr"]), "--aligner", str(checkpoints["asr"]), "--port", "0")
    assert "is not a forced-aligner checkpoint" in line
    line = refused("--model", str(checkpoints["asr"]), "--aligner", str(tmp_path / "none"), "--port", "0")
    assert "aligner checkpoint folder" in line and "does not exist" in line
    assert "--preset aligner-0.6b" in line and "--aligner" in line


def test_a_missing_hub_model_names_the_current_command():
    """No weights can be fetched here: the message says how to get them and how to try without."""
    line = refused("--model", "Qwen/No-Such-Model-For-Tests", "--no-aligner", "--port", "0")
    assert "`hf download Qwen/No-Such-Model-For-Tests`" in line and "huggingface-cli" not in line
    assert "--model" in line and "--preset asr-0.6b" in line


def test_long_utterances_are_fine_without_the_aligner(checkpoints):
    """The conflict is with the aligner only: without it serve goes on to load the model."""
    process = serve("--model", str(checkpoints["asr"]), "--no-aligner", "--port", "0", "--device", "cpu",
                    "--max-utterance-ms", "300000")
    try:
        first = process.stdout.readline()
        assert "loading" in first, first
    finally:
        process.kill()
        process.communicate(timeout=60)


def test_offline_missing_checkpoints_say_what_to_do(checkpoints, tmp_path):
    import numpy as np
    import soundfile


    wav = tmp_path / "a.wav"
    soundfile.write(str(wav), np.zeros(1600, np.float32), 16000)
    result = run_cli("transcribe", str(wav), "--model", str(tmp_path / "none"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "model checkpoint folder" in result.stderr and "--model" in result.stderr
    assert "--preset asr-0.6b" in result.stderr
    result = run_cli("transcribe", str(wav), "--model", str(checkpoints["asr"]), "--aligner", str(tmp_path / "none"))
    assert result.returncode == 2 and "aligner checkpoint folder" in result.stderr, result.stderr
    assert "--aligner" in result.stderr and "--preset aligner-0.6b" in result.stderr


# ``serve`` as a process whose pre-flight port check passes as if it ran just before another
# process took the port (replicas started at once on one host): the bind itself then fails.
RACE_DRIVER = """
import sys
from qwen3_asr_stream.server import cli
cli.check_port_free = lambda host, port, what: None
from qwen3_asr_stream.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("option", ["--http-port", "--port", "--metrics-port"])
def test_a_port_taken_after_the_check_is_one_line(checkpoints, listening, option):
    import re
    import subprocess
    import sys

    from conftest import _env

    args = {"--port": "0", "--http-port": "0", option: str(listening)}
    env = _env()
    done = subprocess.run([sys.executable, "-c", RACE_DRIVER, "serve", "--model", str(checkpoints["asr"]),
                           "--no-aligner", "--device", "cpu", *[x for kv in args.items() for x in kv]],
                          env=env, capture_output=True, text=True, timeout=180)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out and "Event loop is closed" not in out and "Exception ignored" not in out, out
    # our log lines (loading ...) and gRPC core's own log lines (E1206 12:00:00.0 ... add_port.cc) aside
    lines = [line for line in out.splitlines() if line.strip() and " INFO " not in line
             and not re.match(r"[EWI]\d{4} ", line)]
    assert len(lines) == 1 and lines[0].startswith("qwen3-asr-stream serve: error: cannot listen"), out
    assert f":{listening}" in lines[0] and "pick another" in lines[0]


def test_speaker_model_checks(checkpoints, tmp_path):
    """The speaker model's name, weights and settings are checked before anything is loaded."""
    line = refused(*models(checkpoints, "--speaker-model", "ecapa"))
    assert "unknown speaker model 'ecapa'" in line and "wespeaker-resnet34" in line
    line = refused(*models(checkpoints, "--speaker-model", f"wespeaker-resnet34:{tmp_path / 'absent'}"))
    assert "does not exist" in line and "hf download pyannote/wespeaker-voxceleb-resnet34-LM" in line
    line = refused(*models(checkpoints, "--speaker-model", f"wespeaker-resnet34:{tmp_path}"))
    assert "has no pytorch_model.bin" in line
    assert "runs on the CPU only" in refused(*models(checkpoints, "--speaker-model", "resemblyzer",
                                                     "--speaker-device", "cuda"))
    assert "need --speaker-model" in refused(*models(checkpoints, "--speaker-threshold", "0.7"))
    assert "--speaker-device 'cuda:x' is not a torch device" in refused(*models(
        checkpoints, "--speaker-model", f"wespeaker-resnet34:{tmp_path}", "--speaker-device", "cuda:x"))
    assert "--speaker-threads must be 1-64" in refused(*models(checkpoints, "--speaker-model", "resemblyzer",
                                                               "--speaker-threads", "0"))
