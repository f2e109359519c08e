"""Deepgram's ``diarize`` and ``multichannel`` on /v1/listen, through the session core's diarization
(resemblyzer speaker model, real GE2E weights) and separate channels, driven by the official
deepgram-sdk in Pipecat's virtualenv (tests/deepgram_driver.py, as test_deepgram_api does).

The tiny ASR checkpoint has random weights, so the text is random: the tests read speakers from
the words' ``speaker`` and channels from ``channel_index`` and the results' times.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soxr

from conftest import deepgram_drive, deepgram_python, free_port

pytest.importorskip("webrtcvad")
pytest.importorskip("resemblyzer")

from qwen3_asr_stream.engine.speakers import ResemblyzerEncoder  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402
from qwen3_asr_stream.testing.harness import ServerThread  # noqa: E402
from qwen3_asr_stream.testing.speech import synthesize  # noqa: E402

KEY = "dg-key"
RATE = 16000
# Distinct in variant and pitch (test_diarization measured them: 0.58-0.75 similar between voices).
VOICES = {"A": ("en-us", 25), "B": ("en-us+f2", 95)}
EXCHANGE = [("A", "good morning, let us start with the budget for next year"),
            ("B", "thank you, i have the numbers from the finance team right here"),
            ("A", "that sounds right, the design review went very well yesterday")]
GAP_S = 1.3


def spoken(text: str, voice: str) -> np.ndarray:
    """``text`` in ``voice`` at 16 kHz, float32, trimmed to where it is audible."""
    name, pitch = VOICES[voice]
    audio, rate = synthesize(text, name, pitch=pitch)
    audio = soxr.resample(audio.astype(np.float32) / 32768, rate, RATE).astype(np.float32)
    audible = np.nonzero(np.abs(audio) > 0.01)[0]
    return audio[audible[0]: audible[-1] + 1]


def write_pcm(path: Path, audio: np.ndarray) -> Path:
    """(n,) or (n, channels) float32 -> a 16-bit WAV."""
    frames = audio if audio.ndim == 2 else audio[:, None]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def venv_python() -> Path:
    return deepgram_python()


@pytest.fixture(scope="module")
def server(engine, aligner):
    options = ServerOptions(port=0, http_port=free_port(), auth_token=KEY)
    with ServerThread(options, {"tiny": engine}, aligner, ResemblyzerEncoder()) as server:
        yield server


@pytest.fixture(scope="module")
def plain_server(engine):
    """No speaker model."""
    with ServerThread(ServerOptions(port=0, http_port=free_port(), auth_token=KEY), {"tiny": engine}) as server:
        yield server


def url(server) -> str:
    return f"http://127.0.0.1:{server.server.http_port}"


def finals(out: list[dict]) -> list[dict]:
    assert not [o for o in out if o["kind"] in ("exception", "error")], out
    return [o["data"] for o in out if o["kind"] == "message" and o["data"]["type"] == "Results"
            and o["data"]["is_final"] and o["data"]["channel"]["alternatives"][0]["transcript"]]


def test_diarize_labels_each_voice_with_one_speaker(venv_python, server, espeak, tmp_path):
    parts, spans, at = [np.zeros(int(0.5 * RATE), np.float32)], [], 0.5
    for voice, text in EXCHANGE:
        audio = spoken(text, voice)
        spans.append((voice, at, at + len(audio) / RATE))
        parts += [audio, np.zeros(int(GAP_S * RATE), np.float32)]
        at += len(audio) / RATE + GAP_S
    wav = write_pcm(tmp_path / "exchange.wav", np.concatenate(parts))
    out = deepgram_drive(venv_python, url(server), wav, "sdk-live", KEY, speed=2,
                         query={"diarize": "true", "language": "en"})
    results = finals(out)
    assert len(results) == len(EXCHANGE), results
    labels: dict[str, set] = {}
    for result, (voice, start, end) in zip(results, spans):
        assert result["start"] < end and result["start"] + result["duration"] > start, (result, voice)
        words = result["channel"]["alternatives"][0]["words"]
        assert all("speaker" in w and "speaker_confidence" not in w for w in words), words
        labels.setdefault(voice, set()).update(w["speaker"] for w in words)
    assert all(labels.values()), labels  # (a random checkpoint's text may lack word units in one final, not all)
    assert labels == {"A": {0}, "B": {1}}, labels  # 0-based as Deepgram counts, stable for the stream


def stereo_exchange() -> tuple[np.ndarray, dict[int, tuple[float, float]]]:
    """Channel 0 speaks first, channel 1 after it (each silent while the other speaks); the spans in s."""
    one, two = spoken("the quick brown fox jumps over the lazy dog", "A"), spoken("hello world this is a test", "B")
    lead, gap = int(0.5 * RATE), int(GAP_S * RATE)
    n = lead + len(one) + gap + len(two) + gap
    stereo = np.zeros((n, 2), np.float32)
    stereo[lead: lead + len(one), 0] = one
    second = lead + len(one) + gap
    stereo[second: second + len(two), 1] = two
    spans = {0: (lead / RATE, (lead + len(one)) / RATE), 1: (second / RATE, (second + len(two)) / RATE)}
    return stereo, spans


def test_multichannel_gives_each_channel_its_own_results(venv_python, server, espeak, tmp_path):
    stereo, spans = stereo_exchange()
    wav = write_pcm(tmp_path / "stereo.wav", stereo)
    out = deepgram_drive(venv_python, url(server), wav, "sdk-live", KEY, speed=2,
                         query={"multichannel": "true", "channels": "2"})
    results = finals(out)
    by_channel = {c: [r for r in results if r["channel_index"] == [c, 2]] for c in (0, 1)}
    assert all(len(v) == 1 for v in by_channel.values()), results
    for c, (start, end) in spans.items():
        [result] = by_channel[c]
        # Each channel's only final lies on its own phrase (the VAD's pre-roll and hangover around it).
        assert start - 0.5 <= result["start"] and result["start"] + result["duration"] <= end + 1.0, (c, result)
    metadata = [o["data"] for o in out if o["kind"] == "message" and o["data"]["type"] == "Metadata"]
    assert metadata and metadata[-1]["channels"] == 2


def test_prerecorded_multichannel_and_diarize(venv_python, server, espeak, tmp_path):
    """A 2-channel WAV posted with multichannel and diarize: one entry per channel, each with the
    text and words of its own phrase only, and the second voice a second speaker. (The random
    checkpoint's text may have no word units: words are checked where there are some.)"""
    stereo, spans = stereo_exchange()
    wav = write_pcm(tmp_path / "stereo.wav", stereo)
    out = deepgram_drive(venv_python, url(server), wav, "sdk-prerecorded", KEY,
                         query={"multichannel": True, "diarize": True})
    assert not [o for o in out if o["kind"] == "exception"], out
    [answer] = [o["data"] for o in out if o["kind"] == "prerecorded"]
    assert answer["metadata"]["channels"] == 2
    channels = answer["results"]["channels"]
    assert len(channels) == 2
    speakers = []
    for c, channel in enumerate(channels):
        alternative = channel["alternatives"][0]
        start, end = spans[c]
        assert alternative["transcript"] and 0 < alternative["confidence"] <= 1, (c, alternative)
        assert all(start - 0.5 <= w["start"] and w["end"] <= end + 1.0 for w in alternative["words"]), (c, alternative)
        speakers.append({w["speaker"] for w in alternative["words"]})
    assert speakers[0] <= {0} and speakers[1] == {1}, speakers  # the first voice is speaker 0, the second 1


def test_refusals_name_what_is_missing(server, plain_server):
    async def get(srv, query: str) -> tuple[int, dict]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url(srv)}/v1/listen?{query}", headers={"Authorization": f"Token {KEY}"}) as r:
                return r.status, await r.json()

    async def main():
        return (await get(plain_server, "encoding=linear16&sample_rate=16000&diarize=true"),
                await get(server, "multichannel=true&channels=2"),
                await get(server, "encoding=linear16&sample_rate=16000&diarize_version=2024"))

    no_model, container, version = asyncio.run(main())
    assert no_model[0] == 400 and "--speaker-model" in no_model[1]["err_msg"]
    assert no_model[1]["err_msg"].startswith("diarize:"), no_model
    assert container[0] == 400 and container[1]["err_msg"].startswith("multichannel:"), container
    assert version[0] == 400 and version[1]["err_msg"].startswith("diarize_version:"), version
