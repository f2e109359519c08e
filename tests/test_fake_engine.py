"""The fake engine keeps the real engine's contract: one scripted scenario on both, the same results.

``qwen3_asr_stream.testing.fake_engine`` stands in for the engine in the session-core
tests; this runs the same calls on it and on the tiny real engine and compares what
each delivers (which utterance, interim or final, the audio covered, error or not) and
what each raises, so the fake cannot drift from the engine silently.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tone_mix
from qwen3_asr_stream.engine.core import EngineClosed, EngineFull, UnknownUtterance
from qwen3_asr_stream.engine.options import UtteranceOptions
from qwen3_asr_stream.testing.fake_engine import FakeEngine
from qwen3_asr_stream.testing.harness import load_engine
from qwen3_asr_stream.server.options import ServerOptions

RATE = 16000
MAX_UTTERANCES = 2


def scenario(engine, wait_idle, break_updates) -> list[tuple]:
    """Drive ``engine`` through admission, cadence, finals, cancel, limits, failures and close;
    every result and every error raised, in order. ``wait_idle(timeout)`` waits until nothing is
    pending; ``break_updates()`` makes later updates fail."""
    seen: list[tuple] = []

    def on(label):
        return lambda r: seen.append((label, "final" if r.is_final else "interim", r.audio_samples,
                                      "error" if r.error else "ok"))

    def attempt(label, action):
        try:
            action()
        except (EngineFull, EngineClosed, UnknownUtterance, ValueError) as exc:
            seen.append((label, "raises", type(exc).__name__))

    def settle():
        assert wait_idle(60), "the engine did not settle"

    audio = tone_mix(8.0, seed=5)
    every = UtteranceOptions(language="English", update_interval_s=0.5)
    a = engine.open(every, on("a"))
    engine.push(a, audio[:4800])  # 0.3 s: no interim yet
    settle()
    engine.push(a, audio[4800:9600])  # 0.6 s: one interim, covering 0.6 s
    settle()
    engine.push(a, audio[9600:28800])  # 1.2 s more at once: one interim, covering all 1.8 s
    settle()
    b = engine.open(UtteranceOptions(language="English", interim_results=False), on("b"))
    engine.push(b, audio[:RATE])  # no interims when none are asked for
    settle()
    attempt("c", lambda: engine.open(every, on("c")))  # at max_utterances: EngineFull
    engine.finish(a)  # the final, covering everything pushed
    settle()
    attempt("a", lambda: engine.push(a, audio[:1600]))  # after its final a is not open: UnknownUtterance
    attempt("a", lambda: engine.finish(a))
    c = engine.open(every, on("c"))  # room again
    engine.cancel(b)  # nothing more for b
    engine.cancel(b)  # cancelling twice is harmless
    attempt("b", lambda: engine.push(b, audio[:1600]))
    settle()
    attempt("c", lambda: engine.push(c, np.zeros(int(engine.options.max_utterance_s * RATE) + 1, np.float32)))
    break_updates()
    engine.push(c, audio[:9600])  # an interim that fails
    settle()
    engine.finish(c)  # a final that fails ends the utterance
    settle()
    attempt("c", lambda: engine.finish(c))
    engine.close()
    attempt("d", lambda: engine.open(every, on("d")))  # EngineClosed
    return seen


EXPECTED = [
    ("a", "interim", 9600, "ok"),
    ("a", "interim", 28800, "ok"),
    ("c", "raises", "EngineFull"),
    ("a", "final", 28800, "ok"),
    ("a", "raises", "UnknownUtterance"),
    ("a", "raises", "UnknownUtterance"),
    ("b", "raises", "UnknownUtterance"),
    ("c", "raises", "ValueError"),
    ("c", "interim", 9600, "error"),
    ("c", "final", 9600, "error"),
    ("c", "raises", "UnknownUtterance"),
    ("d", "raises", "EngineClosed"),
]


def test_the_fake_and_the_real_engine_deliver_the_same(checkpoints, monkeypatch):
    # Room in the cache for more than MAX_UTTERANCES: admission is by count here (the fake keeps no memory ledger).
    real = load_engine(str(checkpoints["asr"]), ServerOptions(), kv_cache_gib=1.0, max_utterances=MAX_UTTERANCES)
    try:
        def break_real():
            def broken(batch):
                raise RuntimeError("model exploded")

            monkeypatch.setattr(real.runner, "update", broken)

        from_real = scenario(real, real.core.wait_idle, break_real)
    finally:
        real.close()
    fake = FakeEngine(real.options).start()
    from_fake = scenario(fake, fake.wait_idle, lambda: fake.fail_updates("model exploded"))
    assert from_fake == from_real
    assert from_real == EXPECTED  # and both are what the contract says


def test_a_final_supersedes_a_pending_interim_and_comes_exactly_once():
    """Finals first, each once; an interim still pending when its utterance finishes is not computed."""
    engine = FakeEngine(update_delay_s=0.05).start()
    seen = []
    opts = UtteranceOptions(update_interval_s=0.5)
    ids = [engine.open(opts, lambda r, i=i: seen.append((i, r.is_final, r.audio_samples))) for i in range(3)]
    engine.push(ids[0], np.zeros(RATE, np.float32))  # taken at once: the worker runs it (0.05 s)
    engine.push(ids[1], np.zeros(RATE, np.float32))  # pending behind it ...
    engine.finish(ids[1])  # ... and superseded by the final
    engine.finish(ids[2])
    assert engine.wait_idle(10)
    engine.close()
    assert sorted(seen) == [(0, False, RATE), (1, True, RATE), (2, True, 0)]
    assert [s for s in seen if s[0] == 1] == [(1, True, RATE)]
    assert engine.stats().open_utterances == 1 and engine.stats().updates == 3


def test_text_is_scripted_from_the_audio_and_stable_text_only_grows():
    engine = FakeEngine(words=["one", "two", "three"], seconds_per_word=0.5).start()
    seen = []
    uid = engine.open(UtteranceOptions(update_interval_s=0.5), seen.append)
    for _ in range(4):
        engine.push(uid, np.zeros(RATE // 2, np.float32))
        assert engine.wait_idle(10)
    engine.finish(uid)
    assert engine.wait_idle(10)
    engine.close()
    assert [r.text for r in seen] == ["one", "one two", "one two three", "one two three one", "one two three one"]
    interims = [r.stable_text for r in seen[:-1]]
    assert interims == ["", "one", "one two", "one two three"]
    assert seen[-1].is_final and seen[-1].stable_text == "" and seen[-1].language == "English"


def test_options_are_checked():
    with pytest.raises(ValueError, match="seconds_per_word"):
        FakeEngine(seconds_per_word=0)
