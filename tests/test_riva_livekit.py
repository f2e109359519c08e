"""LiveKit's NVIDIA STT plugin, with its default model name, against our server.

livekit-plugins-nvidia installs in about a minute, so .ci/run gives it a virtualenv of its own
(.venv-livekit: it brings livekit-agents and its protobuf pins, which the server's venv need not
carry). The plugin sends a Parakeet model name by default: the server runs with
``riva_any_model`` (``serve --riva-any-model``) so that the name reaches the default model.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import BOUNDARY_TOLERANCE_MS, compose, framework_python, write_wav

from qwen3_asr_stream.audio.vad import EndpointingOptions  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

DRIVER = Path(__file__).with_name("riva_livekit_driver.py")


@pytest.fixture(scope="module")
def livekit_python() -> Path:
    return framework_python(".venv-livekit", "QWEN3_ASR_LIVEKIT_PYTHON", "livekit-plugins-nvidia==1.8.9 livekit-plugins-deepgram==1.8.9")


def test_livekit_nvidia_stt_with_its_default_model(livekit_python, engine, aligner, phrases, tmp_path):
    a, b, rate = phrases
    speech = compose([a, b], rate)
    wav = write_wav(tmp_path / "speech.wav", speech.pcm, rate)
    options = ServerOptions(port=0, auth_token="lk-key", riva_any_model=True)
    with ServerThread(options, {"tiny": engine}, aligner) as server:
        done = subprocess.run([str(livekit_python), str(DRIVER), "--server", server.address, "--wav", str(wav),
                               "--api-key", "lk-key"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finals = [e for e in events if e["type"] == "FINAL_TRANSCRIPT"]
    assert len(finals) == 2 and all(e["text"] for e in finals), (events, done.stderr[-2000:])
    assert [e for e in events if e["type"] == "INTERIM_TRANSCRIPT"], events
    pre, post = EndpointingOptions().pre_roll_ms, EndpointingOptions().hangover_ms
    for final, (first, last) in zip(finals, speech.spans):
        assert final["words"], final  # the plugin always asks for word offsets
        assert (first - pre - BOUNDARY_TOLERANCE_MS) / 1000 <= final["start_time"]
        assert final["end_time"] <= (last + post + BOUNDARY_TOLERANCE_MS) / 1000
