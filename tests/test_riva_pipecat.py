"""Pipecat's NVIDIA STT services against our server, and our client installed beside pipecat-ai[nvidia].

Pipecat (core and its nvidia extra) requires protobuf < 7, so it lives in a virtualenv of its
own: .ci/run creates .venv-pipecat with ``pip install -e . "pipecat-ai[nvidia]==1.14.0"`` (which
is also the resolver check that our client and Pipecat install together). These tests start our
server here and run tests/riva_pipecat_driver.py with that venv's Python.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import compose, framework_python, write_wav

from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

DRIVER = Path(__file__).with_name("riva_pipecat_driver.py")
API_KEY = "pipecat-key"


@pytest.fixture(scope="module")
def pipecat_python() -> Path:
    return framework_python(".venv-pipecat", "QWEN3_ASR_PIPECAT_PYTHON", "-e . 'pipecat-ai[nvidia,deepgram]==1.14.0' deepgram-sdk==7.16.0")


@pytest.fixture(scope="module")
def server(engine, aligner):
    with ServerThread(ServerOptions(port=0, auth_token=API_KEY), {"tiny": engine}, aligner) as server:
        yield server


@pytest.fixture(scope="module")
def speech_file(phrases, tmp_path_factory):
    a, b, rate = phrases
    return write_wav(tmp_path_factory.mktemp("pipecat") / "speech.wav", compose([a, b], rate).pcm, rate)


def drive(python: Path, server, wav: Path, service: str, api_key: str | None = API_KEY) -> list[dict]:
    command = [str(python), str(DRIVER), "--server", server.address, "--wav", str(wav), "--service", service]
    if api_key:
        command += ["--api-key", api_key]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_client_installs_beside_pipecat_nvidia(pipecat_python):
    check = subprocess.run([str(pipecat_python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = ("import google.protobuf, pipecat.services.nvidia.stt, riva.client, qwen3_asr_client;"
             "from qwen3_asr_client import proto;"
             "r = proto.StreamingRecognitionResult(transcript='x', words=[proto.WordInfo(word='x', end_ms=5)]);"
             "assert proto.StreamingRecognitionResult.FromString(r.SerializeToString()) == r;"
             "print(google.protobuf.__version__)")
    done = subprocess.run([str(pipecat_python), "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip().split(".")[0]) < 7  # our asr.v1 code runs on Pipecat's protobuf


def test_pipecat_nvidia_stt_service_streams(pipecat_python, server, speech_file):
    frames = drive(pipecat_python, server, speech_file, "streaming")
    assert not [f for f in frames if f["type"] == "ErrorFrame"], frames
    finals = [f for f in frames if f["type"] == "TranscriptionFrame"]
    interims = [f for f in frames if f["type"] == "InterimTranscriptionFrame"]
    assert len(finals) == 2 and all(f["text"] for f in finals), frames  # one per phrase
    assert interims, frames


def test_pipecat_nvidia_segmented_stt_service(pipecat_python, server, speech_file):
    frames = drive(pipecat_python, server, speech_file, "segmented")
    assert not [f for f in frames if f["type"] == "ErrorFrame"], frames
    finals = [f for f in frames if f["type"] == "TranscriptionFrame"]
    assert len(finals) == 2 and all(f["text"] for f in finals), frames  # one segment, two utterances


def test_pipecat_with_a_wrong_key_gets_an_error(pipecat_python, server, speech_file):
    frames = drive(pipecat_python, server, speech_file, "segmented", api_key="wrong")
    errors = [f for f in frames if f["type"] == "ErrorFrame"]
    assert errors and all("bearer token" in e["error"] for e in errors), frames
    assert not [f for f in frames if f["type"] == "TranscriptionFrame"]
