"""Shared fixtures: tiny random-weight checkpoints in the published layout, synthesized audio."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
for part in ("service", "client"):
    path = str(ROOT / part)
    if path not in sys.path:
        sys.path.insert(0, path)


CUDA_SKIP = "needs a CUDA device"
# Under CI=true a skip is a failure, except for lack of a GPU: a test whose dependency or
# precondition is missing in CI must not pass by not running.
STRICT_SKIPS = os.environ.get("CI", "").lower() == "true"


def _fail_skip(report) -> None:
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if CUDA_SKIP not in reason:
            report.outcome = "failed"
            report.longrepr = f"skipped under CI=true (only '{CUDA_SKIP}' may skip): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip(outcome.get_result())


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason=CUDA_SKIP)
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Folders of the tiny presets, written once per test session."""
    from qwen3_asr_stream.testing.checkpoints import TINY_ALIGNER, TINY_ASR, TINY_ASR_ALT, write_checkpoint

    base = tmp_path_factory.mktemp("checkpoints")
    return {
        "asr": write_checkpoint(base / "asr", TINY_ASR, seed=1),
        "asr_alt": write_checkpoint(base / "asr_alt", TINY_ASR_ALT, seed=2),
        "aligner": write_checkpoint(base / "aligner", TINY_ALIGNER, seed=3),
    }


@pytest.fixture(scope="module")
def engine(checkpoints):
    """The tiny ASR checkpoint loaded as ``serve`` loads it (default server options), per module."""
    from qwen3_asr_stream.testing.harness import load_engine
    from qwen3_asr_stream.server.options import ServerOptions

    engine = load_engine(str(checkpoints["asr"]), ServerOptions())
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def aligner(checkpoints):
    """The tiny forced aligner loaded as ``serve`` loads it, per module."""
    from qwen3_asr_stream.testing.harness import load_aligner

    return load_aligner(str(checkpoints["aligner"]))


def framework_python(venv: str, env_var: str, install: str) -> Path:
    """The Python of a voice-agent framework's own virtualenv (``bash .ci/run`` creates it);
    ``env_var`` names another. A missing one fails the test, saying how to make it."""
    path = Path(os.environ.get(env_var, ROOT / venv / "bin" / "python"))
    assert path.exists(), (f"no virtualenv at {path}: bash .ci/run creates it (python3 -m venv {venv} && "
                           f"{venv}/bin/pip install {install}), or set {env_var}")
    return path


def tone_mix(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    """A few gliding tones with an amplitude envelope and a little noise: varied, speech-like energy."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    out = np.zeros(n, dtype=np.float64)
    for _ in range(3):
        f0, f1 = rng.uniform(120, 2500, size=2)
        phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * max(seconds, 1e-3)))
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t + rng.uniform(0, 6))
        out += rng.uniform(0.05, 0.3) * envelope * np.sin(phase)
    out += 0.01 * rng.standard_normal(n)
    return np.clip(out, -1, 1).astype(np.float32)


@pytest.fixture(scope="session")
def espeak():
    """What speaks test phrases: eSpeak NG from the espeakng-loader wheel (test extra; no system
    package), else the espeak-ng program; skip with the reason (a failure under CI=true) without both."""
    try:
        from qwen3_asr_stream.testing.speech import SpeechError, synthesize as speak

        speak("test")
        return speak
    except (ImportError, SpeechError, OSError) as exc:
        library_error = exc
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip(f"no speech synthesizer: {library_error}; or apt-get install espeak-ng")
    return exe


def synthesize(espeak, text: str, path: Path) -> Path:
    """``text`` spoken (American English, 160 words per minute) into a WAV file."""
    if callable(espeak):
        import soundfile

        audio, rate = espeak(text)
        soundfile.write(str(path), audio, rate, subtype="PCM_16")
        return path
    subprocess.run([espeak, "-v", "en-us", "-s", "160", "-w", str(path), text], check=True, capture_output=True)
    return path
