"""The engine's memory: the budget is what is allocated, admission refuses exactly at it,
caches never grow or get copied, and the fixed-shape decode steps are prepared only at start."""

from __future__ import annotations

import threading

import pytest

from conftest import tone_mix
from qwen3_asr_stream.checkpoint import load_model
from qwen3_asr_stream.engine.text_layer import EngineFull, StreamingEngine, memory_needed
from qwen3_asr_stream.engine.options import EngineOptions, PolicyOptions, UtteranceOptions
from qwen3_asr_stream.text.tokenizer import TextTokenizer

POLICY = PolicyOptions(max_tokens_per_update=6, max_tokens_final=12, repetition_limit=0)
CONTEXT = "Names: Anneliese Vogelsang, Przemysław Wąsowicz, Ngozi Okonkwo-Adeyemi. " * 6


@pytest.fixture(scope="module")
def asr(checkpoints):
    folder = checkpoints["asr"]
    return load_model(folder), TextTokenizer.from_folder(folder)


def _measured_bytes(engine: StreamingEngine) -> int:
    """Bytes of every cache tensor the engine holds, read from the tensors themselves."""
    core = engine.core
    with core._cond:
        caches = [e.utterance.cache for e in core._entries.values() if e.utterance.cache is not None]
    total = sum(c.storage.untyped_storage().nbytes() for c in caches)
    if core.runner.graphs is not None:
        staging = core.runner.graphs.staging
        total += sum(t.untyped_storage().nbytes() for t in staging.keys + staging.values)
    return total


def _wait(predicate, timeout=60.0):
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return True
        done.wait(0.02)
    return predicate()


@pytest.mark.parametrize("static", [False, True])
def test_kv_accounting_equals_the_bytes_allocated(asr, static):
    model, tokenizer = asr
    options = EngineOptions(max_batch=4, max_utterance_s=20, policy=POLICY, static_decode=static)
    results = []
    with StreamingEngine(model, tokenizer, options) as engine:
        ids = [engine.open(UtteranceOptions(context=CONTEXT if i % 2 else ""), results.append) for i in range(3)]
        for uid in ids:
            engine.push(uid, tone_mix(2.5, seed=uid))
        assert _wait(lambda: len(results) == 3)
        stats = engine.stats()
        measured = _measured_bytes(engine)
        assert stats.kv_reserved_bytes == stats.kv_allocated_bytes == measured
        # The pure function gives the same figure for an utterance without context...
        plain = memory_needed(model, tokenizer, options)
        cache = engine.core._entries[ids[0]].utterance.cache
        assert cache.storage.untyped_storage().nbytes() == plain.utterance_bytes
        # ... and the staging cache of the fixed-shape steps is counted too.
        staging = measured - sum(engine.core._entries[u].utterance.cache.nbytes for u in ids)
        assert staging == plain.graph_bytes and (staging > 0) == static
        # A longer prompt reserves (and allocates) more.
        longer = engine.core._entries[ids[1]].utterance.cache
        assert longer.nbytes > cache.nbytes
        for uid in ids:
            engine.finish(uid)
        assert _wait(lambda: engine.stats().open_utterances == 0)
        assert engine.stats().kv_reserved_bytes == (staging if static else 0)


def test_admission_refuses_exactly_at_the_budget(asr):
    model, tokenizer = asr
    base = EngineOptions(max_utterances=64, max_utterance_s=30, policy=POLICY)
    memory = memory_needed(model, tokenizer, base)
    for budget, admitted in ((memory.budget_for(3), 3), (memory.budget_for(3) - 1, 2), (memory.budget_for(1), 1)):
        options = EngineOptions(max_utterances=64, max_utterance_s=30, policy=POLICY, kv_budget_bytes=budget)
        with StreamingEngine(model, tokenizer, options) as engine:
            for _ in range(admitted):
                engine.open(UtteranceOptions(), lambda r: None)
            with pytest.raises(EngineFull, match="budget"):
                engine.open(UtteranceOptions(), lambda r: None)
            assert engine.stats().kv_reserved_bytes <= budget
    # A context costs its tokens: two plain utterances fit, a plain and a long one do not.
    options = EngineOptions(max_utterances=64, max_utterance_s=30, policy=POLICY, kv_budget_bytes=memory.budget_for(2))
    with StreamingEngine(model, tokenizer, options) as engine:
        first = engine.open(UtteranceOptions(), lambda r: None)
        with pytest.raises(EngineFull):
            engine.open(UtteranceOptions(context=CONTEXT), lambda r: None)
        engine.cancel(first)  # cancelling gives the room back
        engine.open(UtteranceOptions(context=CONTEXT), lambda r: None)


def test_a_long_utterance_prepares_no_graph_after_start_and_never_grows_its_cache(asr):
    model, tokenizer = asr
    options = EngineOptions(max_batch=2, max_utterance_s=40, policy=PolicyOptions(
        update_interval_s=1.0, max_tokens_per_update=6, max_tokens_final=24, repetition_limit=0), static_decode=True)
    results = []
    engine = StreamingEngine(model, tokenizer, options)
    graphs = engine.runner.graphs
    assert graphs is not None and graphs.captures == 0
    with engine:
        prepared = graphs.captures
        assert prepared == len(graphs.shapes) > 1
        uid = engine.open(UtteranceOptions(), results.append)
        audio = tone_mix(39.0, seed=12)
        storages = set()
        for start in range(0, audio.shape[0], 16000):
            engine.push(uid, audio[start : start + 16000])
            assert engine.core.wait_idle(60)
            cache = engine.core._entries[uid].utterance.cache
            storages.add(cache.storage.data_ptr())
        engine.finish(uid)
        assert _wait(lambda: results and results[-1].is_final)
    # An interim each second, but for those due just before a window completes (they wait for it).
    assert len(results) >= 35 and all(not r.error for r in results)
    assert graphs.captures == prepared  # nothing captured mid-utterance
    assert graphs.eager_batches == 0  # every batch fit a prepared bucket
    assert len(storages) == 1  # one cache, allocated once, never grown or replaced


@pytest.mark.parametrize("language", [None, "English", "Indonesian"])
def test_the_served_budget_admits_max_utterances_whatever_language_they_force(checkpoints, language):
    """``load_engine`` (what ``serve`` uses) sizes the cache for the longest prompt a stream gets
    without context: as many utterances as ``max_utterances`` fit with any language forced, and
    the one after is refused by count."""
    from qwen3_asr_stream.server.loading import load_engine
    from qwen3_asr_stream.server.options import ServerOptions

    engine = load_engine(str(checkpoints["asr"]), ServerOptions(), max_utterances=4)
    try:
        for _ in range(4):
            engine.open(UtteranceOptions(language=language), lambda result: None)
        with pytest.raises(EngineFull, match="utterances"):
            engine.open(UtteranceOptions(language=language), lambda result: None)
    finally:
        engine.close()


def test_a_cache_view_writes_into_its_cache_and_keeps_every_attribute():
    import torch

    from qwen3_asr_stream.model.kv_cache import KVCache

    big = KVCache(n_layers=2, batch=4, kv_heads=2, head_dim=3, capacity=8, dtype=torch.float32, device="cpu")
    big.cursor = 5
    view = big.view(2, 6)
    assert set(vars(view)) == set(vars(big))  # a field added to KVCache reaches views too
    assert (view.batch, view.capacity, view.cursor, view.n_layers) == (2, 6, 0, 2)
    keys = torch.ones(2, 2, 1, 3)
    view.write(1, keys, 2 * keys)
    view.advance(torch.ones(2, 1, dtype=torch.bool))
    assert big.keys[1][:2, :, 0].eq(1).all() and big.values[1][:2, :, 0].eq(2).all() and big.keys[1][2:].eq(0).all()
    assert big.valid[:, 0].tolist() == [True, True, False, False] and big.next_position.tolist() == [1, 1, 0, 0]
    assert big.cursor == 5  # the view's cursor is its own
    with pytest.raises(ValueError):
        big.view(5, 6)
