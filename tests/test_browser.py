"""The live captions page in a real browser: Debian's chromium driven by Playwright (no browser
download), its microphone a synthesized WAV (chromium's fake capture device).

The page streams the "microphone" through its AudioWorklet to /v1/realtime; the test
asserts the final caption lines (one per phrase, in order), provisional text shown
before each of them, word times on the finals, and saves a screenshot.
"""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from conftest import free_port, synthesize

pytest.importorskip("webrtcvad")
from playwright.sync_api import sync_playwright  # noqa: E402

from qwen3_asr_stream.testing.harness import ServerThread, load_aligner, load_engine  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-token"
PHRASES = ["the quick brown fox jumps over the lazy dog", "hello world this is a test of live captions",
           "good bye and thank you"]
LEAD_S, GAP_S, TAIL_S = 1.5, 1.5, 3.0


@pytest.fixture(scope="module")
def microphone(espeak, tmp_path_factory) -> tuple[Path, list[float]]:
    """Three phrases with pauses, 48 kHz 16-bit mono (chromium's capture rate); the phrase starts in s."""
    folder = tmp_path_factory.mktemp("mic")
    rate, parts, starts, at = 48000, [np.zeros(int(LEAD_S * 48000), np.float32)], [], LEAD_S
    for i, text in enumerate(PHRASES):
        with wave.open(str(synthesize(espeak, text, folder / f"{i}.wav"))) as w:
            audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
            audio = soxr.resample(audio, w.getframerate(), rate).astype(np.float32)
        starts.append(at)
        parts += [audio, np.zeros(int((GAP_S if i + 1 < len(PHRASES) else TAIL_S) * rate), np.float32)]
        at += len(audio) / rate + GAP_S
    path = folder / "mic.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes())
    return path, starts


@pytest.fixture(scope="module")
def server(checkpoints):
    engine = load_engine(str(checkpoints["asr"]), ServerOptions())
    options = ServerOptions(port=0, http_port=free_port(), auth_token=TOKEN)
    with ServerThread(options, {"tiny": engine}, load_aligner(str(checkpoints["aligner"]))) as server:
        yield server
    engine.close()


def test_live_captions_page_with_a_fake_microphone(server, microphone, tmp_path):
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), "chromium is not installed (.ci/run installs it)"
    wav, starts = microphone
    url = f"http://127.0.0.1:{server.server.http_port}/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            console = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(url)
            page.fill("#token", TOKEN)
            page.select_option("#language", "en")
            page.click("#start")
            page.wait_for_function(f"document.querySelectorAll('#finals .final').length >= {len(PHRASES)}",
                                   timeout=90_000)
            page.wait_for_timeout(500)  # any extra line would show up now
            finals = page.eval_on_selector_all("#finals .final", "ps => ps.map(p => ({item: p.dataset.item, "
                                               "start: +p.dataset.startMs, words: p.querySelectorAll('.word').length,"
                                               " title: (p.querySelector('.word') || {}).title || ''}))")
            log = page.evaluate("window.captionLog")
            final_style = page.eval_on_selector("#finals .final", "p => getComputedStyle(p).fontStyle")
            provisional_style = page.eval_on_selector("#provisional", "p => getComputedStyle(p).fontStyle")
            stats = page.inner_text("#stats")
            page.screenshot(path=str(tmp_path / "live-captions.png"), full_page=True)
            page.click("#stop")
            # The file picker streams a file the same way: one more final line.
            page.set_input_files("#file", str(wav.parent / "0.wav"))
            page.wait_for_function(f"document.querySelectorAll('#finals .final').length > {len(PHRASES)}",
                                   timeout=60_000)
            from_file = page.eval_on_selector_all("#finals .final", "ps => ps.length")
        finally:
            browser.close()
    print(f"screenshot: {tmp_path / 'live-captions.png'}")

    assert len(finals) == len(PHRASES), (finals, console)
    # In order, one line per phrase: each starts near its phrase (the capture starts a little late).
    assert [f["start"] for f in finals] == sorted(f["start"] for f in finals)
    gaps = np.diff([f["start"] for f in finals]) / 1000
    assert np.allclose(gaps, np.diff(starts), atol=0.5), (gaps, np.diff(starts))
    # Provisional text of each line was shown before its final line.
    for final in finals:
        kinds = [e["kind"] for e in log if e["item"] == final["item"]]
        assert "provisional" in kinds and kinds.index("provisional") < kinds.index("final"), kinds
    assert [e["item"] for e in log if e["kind"] == "final"] == [f["item"] for f in finals]
    # Finals and provisional text look different; finals carry word times; latency is shown.
    assert (final_style, provisional_style) == ("normal", "italic")
    assert any(f["words"] for f in finals) and all(" s" in f["title"] for f in finals if f["words"])
    assert "latency after the end of speech" in stats and "median" in stats
    assert (tmp_path / "live-captions.png").stat().st_size > 10_000
    assert from_file == len(PHRASES) + 1
