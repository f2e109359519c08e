"""An interim due exactly at a window boundary, with the client pausing there.

Even updates hold an interim due just before an 8 s window completes (the window's last
frame needs 40 samples past 8.0 s); a client that sent exactly 8.0 s and pauses must still
get that interim, computed from the audio there is, once no audio comes.
"""

from __future__ import annotations

import threading
import time

from conftest import tone_mix
from qwen3_asr_stream.checkpoint import load_model
from qwen3_asr_stream.engine.options import EngineOptions, PolicyOptions, UtteranceOptions
from qwen3_asr_stream.engine.text_layer import StreamingEngine
from qwen3_asr_stream.text.tokenizer import TextTokenizer

CHUNK = 1600  # 100 ms


def test_an_interim_due_at_a_window_boundary_comes_when_the_client_pauses(checkpoints):
    folder = checkpoints["asr"]
    policy = PolicyOptions(update_interval_s=2.0, max_tokens_per_update=4, repetition_limit=0)
    engine = StreamingEngine(load_model(folder), TextTokenizer.from_folder(folder),
                             EngineOptions(max_utterance_s=20, policy=policy))
    window = engine.core.model.dims.audio.window_frames * 160  # 8.0 s of samples
    audio = tone_mix(10.0, seed=5)
    results, arrived = [], threading.Event()

    def on_result(result):
        results.append(result)
        arrived.set()

    with engine:
        uid = engine.open(UtteranceOptions(), on_result)
        for start in range(0, window, CHUNK):  # exactly 8.0 s, as a real-time client would send it
            engine.push(uid, audio[start:start + CHUNK])
            assert engine.core.wait_idle(60)
            time.sleep(0.01)
        paused = time.monotonic()
        while not any(r.audio_samples == window for r in results) and time.monotonic() - paused < 30:
            arrived.wait(1.0)
            arrived.clear()
        waited = time.monotonic() - paused
        ends = [r.audio_samples for r in results]
        assert window in ends, ends  # the interim due at 8.0 s came without more audio
        assert waited < 30  # by time (it waits at most 1 s for audio; a generous bound for a loaded machine)
        # The audio goes on: the window completes and is committed, the cadence continues from 8.0 s.
        for start in range(window, len(audio), CHUNK):
            engine.push(uid, audio[start:start + CHUNK])
            assert engine.core.wait_idle(60)
        engine.finish(uid)
        assert engine.core.wait_idle(60)
        stats = engine.stats()
    interims = [r.audio_samples for r in results if not r.is_final]
    assert interims == sorted(interims) and interims.count(window) == 1
    assert results[-1].is_final and not any(r.error for r in results)
    assert stats.commits == 1  # the window completed after the held interim: committed between updates
