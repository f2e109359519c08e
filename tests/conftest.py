"""Shared fixtures and helpers: tiny random-weight checkpoints in the published layout, synthesized
speech, servers' free ports, raw gRPC calls. Test modules take fixtures from here (pytest does) and
helpers with ``from conftest import ...``; no test module imports from another.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


@pytest.fixture
def fake_engine():
    """A started ``FakeEngine`` (the engine's interface on a script, no model), per test."""
    from qwen3_asr_stream.testing.fake_engine import FakeEngine

    engine = FakeEngine().start()
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


DEEPGRAM_INSTALL = "-e . 'pipecat-ai[nvidia,deepgram]==1.14.0' deepgram-sdk==7.16.0"


def deepgram_python() -> Path:
    """The Python of the venv with the official deepgram-sdk and Pipecat's Deepgram service."""
    return framework_python(".venv-pipecat", "QWEN3_ASR_PIPECAT_PYTHON", DEEPGRAM_INSTALL)


def deepgram_drive(python: Path, url: str, wav: Path, mode: str, key: str, **options) -> list[dict]:
    """Run tests/deepgram_driver.py (the SDK or Pipecat against ``url``); its JSON lines."""
    import json

    command = [str(python), str(ROOT / "tests" / "deepgram_driver.py"), "--url", url, "--wav", str(wav),
               "--mode", mode, "--api-key", key]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", json.dumps(value) if isinstance(value, dict) else str(value)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


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


# -- waiting for something to happen -----------------------------------------------------------------


def wait_until(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
               what: str = "") -> object:
    """Poll ``condition`` until it is true (returned) or ``timeout`` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)
    return value


async def wait_until_async(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
                           what: str = "") -> object:
    """``wait_until`` on an event loop: polls without blocking it."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(interval)
    return value


def on_server_loop(server, read: Callable[[], object]) -> object:
    """``read()`` evaluated on a ``ServerThread``'s event loop (a consistent view of its calls)."""
    async def call():
        return read()

    return server.run(call, timeout=10)


def speaking_sessions(server) -> int:
    """How many of a ``ServerThread``'s sessions are inside an utterance now."""
    return on_server_loop(server, lambda: sum(s.in_speech for s in server.server.calls.sessions))


# -- speech: phrases spoken by eSpeak NG, composed into a stream with known speech spans -----------------

SILENCE_S = 1.2
LEAD_S = 0.5
BOUNDARY_TOLERANCE_MS = 150  # how far a detected speech start / end may be from the audible span


@dataclass
class Speech:
    pcm: np.ndarray  # int16 mono
    rate: int
    spans: list[tuple[int, int]]  # (first, last) audible ms of each phrase, from the stream start

    @property
    def format(self):
        from qwen3_asr_client import AudioFormat

        return AudioFormat(self.rate)

    def chunks(self, ms: float, pcm: np.ndarray | None = None) -> list[bytes]:
        data = (self.pcm if pcm is None else pcm).tobytes()
        step = self.format.chunk_bytes(ms)
        return [data[i : i + step] for i in range(0, len(data), step)]


def read_wav(path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").copy(), w.getframerate()


def write_wav(path, pcm: np.ndarray, rate: int):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def wav_bytes(samples: np.ndarray | bytes, rate: int = 16000, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV file in memory. ``samples``: int16 PCM bytes (interleaved frames), an integer
    array (its values as int16), or a float array in [-1, 1], converted as soundfile (libsndfile 1.2)
    writes PCM_16: floor(x * 32768), clipped to the int16 range."""
    if isinstance(samples, (bytes, bytearray, memoryview)):
        data = bytes(samples)
    else:
        samples = np.asarray(samples)
        if np.issubdtype(samples.dtype, np.floating):
            samples = np.clip(np.floor(samples.astype(np.float64) * 32768), -32768, 32767)
        data = samples.astype("<i2").tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)
    return out.getvalue()


def white_noise(seconds: float = 1.0, rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Uniform noise in [-0.1, 0.1] (float32): audio that is no speech."""
    return np.random.default_rng(seed).uniform(-0.1, 0.1, int(rate * seconds)).astype(np.float32)


def compose(phrases: list[np.ndarray], rate: int, lead_s: float = LEAD_S, gap_s: float = SILENCE_S,
            tail_s: float = SILENCE_S) -> Speech:
    """Phrases with silence before, between and after them, and where each one is audible."""
    parts, spans, at = [np.zeros(int(lead_s * rate), np.int16)], [], int(lead_s * rate)
    for i, phrase in enumerate(phrases):
        audible = np.nonzero(np.abs(phrase.astype(np.int32)) > 300)[0]
        spans.append((round(1000 * (at + audible[0]) / rate), round(1000 * (at + audible[-1]) / rate)))
        parts.append(phrase)
        at += len(phrase)
        pause = int((gap_s if i < len(phrases) - 1 else tail_s) * rate)
        parts.append(np.zeros(pause, np.int16))
        at += pause
    return Speech(np.concatenate(parts), rate, spans)


@pytest.fixture(scope="module")
def phrases(espeak, tmp_path_factory):
    """Two spoken phrases (int16 at eSpeak's rate) and the rate."""
    folder = tmp_path_factory.mktemp("speech")
    a, rate = read_wav(synthesize(espeak, "the quick brown fox jumps over the lazy dog", folder / "a.wav"))
    b, _ = read_wav(synthesize(espeak, "hello world this is a test", folder / "b.wav"))
    return a, b, rate


# -- servers and raw calls --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def collect(address: str, chunks, fmt, options, *, realtime: bool = False, **client) -> list:
    """Everything the asr.v1 client's stream yields."""
    from qwen3_asr_client import AsyncStreamingClient

    async with AsyncStreamingClient(address, **client) as c:
        return [item async for item in c.stream(chunks, fmt, options, realtime=realtime)]


def call_status_sync(address: str, requests, metadata=(), credentials=None, stub=None):
    """Send raw requests to ``stub``'s StreamingRecognize (then half-close); the call's status,
    details and responses (asr.v1's stub unless given).

    The blocking API: a request the server no longer reads does not turn the status
    into a client-side INTERNAL error, as a failed write does in grpc.aio.
    """
    import grpc

    if stub is None:
        from qwen3_asr_client.proto import asr_pb2_grpc

        stub = asr_pb2_grpc.SpeechRecognitionStub
    if credentials is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, credentials)
    with channel:
        call = stub(channel).StreamingRecognize(iter(requests), metadata=metadata)
        responses = []
        with contextlib.suppress(grpc.RpcError):
            for response in call:
                responses.append(response)
        return call.code(), call.details(), responses


async def call_status(address: str, requests, metadata=(), credentials=None):
    return await asyncio.to_thread(call_status_sync, address, list(requests), metadata, credentials)


def finals(items) -> list:
    """The final results (asr.v1 client ``Result``s) among a stream's items."""
    from qwen3_asr_client import Result

    return [i for i in items if isinstance(i, Result) and i.is_final]


def asr_config(fmt=None, **fields):
    """An asr.v1 streaming config request (no interims, no word times) with ``fields`` set on its config."""
    from qwen3_asr_client import AudioFormat, RecognitionOptions

    request = RecognitionOptions(interim_results=False, word_timestamps=False).streaming_request(
        fmt or AudioFormat(16000))
    for name, value in fields.items():
        setattr(request.streaming_config.config, name, value)
    return request


def asr_audio(data: bytes):
    """An asr.v1 audio request."""
    from qwen3_asr_client.proto import asr_pb2

    return asr_pb2.StreamingRecognizeRequest(audio_content=data)


def riva_recognize(address: str, data: bytes, **fields):
    """One Riva offline Recognize of ``data`` with ``fields`` in its RecognitionConfig; the call's status code."""
    import grpc
    from riva.client.proto import riva_asr_pb2 as rasr
    from riva.client.proto import riva_asr_pb2_grpc as rasr_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            rasr_grpc.RivaSpeechRecognitionStub(channel).Recognize(
                rasr.RecognizeRequest(config=rasr.RecognitionConfig(**fields), audio=data), timeout=30)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def ga_session(rate: int = 24000, vad: bool = True, words: bool = True, **transcription) -> dict:
    """An OpenAI Realtime (GA) transcription session for ``session.update``: PCM at ``rate``, server VAD
    unless ``vad`` is false, word times if ``words``; ``transcription`` overrides the model and more."""
    return {"type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": rate},
                                "transcription": {"model": "gpt-4o-transcribe", **transcription},
                                "turn_detection": {"type": "server_vad", "silence_duration_ms": 600,
                                                   "prefix_padding_ms": 300} if vad else None}},
            "include": ["item.input_audio_transcription.words"] if words else []}


FORM_BOUNDARY = "robustboundary"  # the multipart boundary of form_body and request_head


def form_body(wav: bytes) -> bytes:
    """An OpenAI transcription upload's multipart body (model whisper-1, ``wav`` as a.wav), written by hand."""
    return (f"--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{FORM_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            f"Content-Type: audio/wav\r\n\r\n").encode() + wav + f"\r\n--{FORM_BOUNDARY}--\r\n".encode()


def request_head(port: int, length: int,
                 content_type: str = f"multipart/form-data; boundary={FORM_BOUNDARY}") -> bytes:
    """The head of a raw POST /v1/audio/transcriptions declaring ``length`` body bytes."""
    return (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode()


def self_signed(tmp_path):
    """A self-signed certificate for localhost / 127.0.0.1: with `cryptography` if installed, else `openssl`."""
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither cryptography nor openssl is available to make a test certificate")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout", str(key_path),
                        "-out", str(cert_path), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# -- decoding with drafts: rows of the one greedy loop on the tiny model ------------------------------

DRAFT_MAX_TOKENS = 24


def tone_prompt(model, tokenizer, seconds: float, seed: int):
    """The ASR prompt's token ids and the encoded audio of ``tone_mix(seconds, seed)``."""
    import torch

    from qwen3_asr_stream.audio.frontend import log_mel
    from qwen3_asr_stream.text.prompts import asr_prompt_text

    encoded = model.encode_audio([log_mel(torch.from_numpy(tone_mix(seconds, seed=seed)))])[0]
    return tokenizer.encode(asr_prompt_text(encoded.shape[0])), encoded


def draft_row(model, tokenizer, prompt, audio, draft=(), max_tokens=DRAFT_MAX_TOKENS, repetition_limit=0):
    """A ``DecodeRow`` of ``prompt`` and ``audio`` with ``draft`` to verify, its own cache and stop rules."""
    from qwen3_asr_stream.engine.decoding import DecodeRow, StopRules

    stop = StopRules(tokenizer.end_of_text_ids(), max_tokens, repetition_limit)
    return DecodeRow(model.new_row_cache(len(prompt) + len(draft) + max_tokens + 1), prompt, stop, audio,
                     draft=tuple(draft))


def draft_kinds(truth: list[int]) -> dict[str, list[int]]:
    """Drafts of each kind for the greedy tokens ``truth``: empty, right, partly right, wrong, and more."""
    wrong = [(t + 7) % 150000 for t in truth]
    return {
        "empty": [],
        "right": truth,
        "partly right": truth[: len(truth) // 2] + wrong[len(truth) // 2 :],
        "wrong": wrong,
        "longer than greedy": truth + [11, 12, 13] * 12,
        "right then one token": truth[:3] + [truth[3] + 1] if len(truth) > 3 else wrong,
    }


# -- the command lines, in subprocesses ---------------------------------------------------------------


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "service"), str(ROOT / "client")]))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """The client's command line (``qwen3_asr_client.cli``), run to its end."""
    return subprocess.run([sys.executable, "-m", "qwen3_asr_client.cli", *args], capture_output=True, text=True,
                          env=_env(), timeout=300)


def serve(*args: str) -> subprocess.Popen:
    """``qwen3_asr_stream.cli serve`` started (no token from the environment); output on its stdout.
    On free ports: gRPC and HTTP on port 0 (any) unless ``args`` name them (serve's defaults, 50051
    and 8000, may be taken on the machine; .ci/run holds them during the tests)."""
    for option in ("--port", "--http-port"):
        if option not in args:
            args = (*args, option, "0")
    env = _env()
    env.pop("QWEN3_ASR_TOKEN", None)
    return subprocess.Popen([sys.executable, "-m", "qwen3_asr_stream.cli", "serve", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
