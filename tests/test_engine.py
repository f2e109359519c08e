"""The streaming engine: incremental updates equal decoding from scratch, bounded work, batching."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from conftest import tone_mix
from qwen3_asr_stream.checkpoint import load_model
from qwen3_asr_stream.engine.decoding import DecodeRow, StopRules, decode, greedy_generate
from qwen3_asr_stream.engine.text_layer import EngineFull, StreamingEngine, _TextState, text_of
from qwen3_asr_stream.engine.options import EngineOptions, PolicyOptions, UtteranceOptions
from qwen3_asr_stream.engine.decoding import repetition_detected
from qwen3_asr_stream.engine.policy import HypothesisState, choose_prefix
from qwen3_asr_stream.engine.runner import ModelRunner
from qwen3_asr_stream.engine.utterance import Utterance, UtteranceSpec
from qwen3_asr_stream.audio.frontend import log_mel
from qwen3_asr_stream.offline import TranscribeOptions, Transcriber
from qwen3_asr_stream.text.prompts import asr_prompt_ids, asr_prompt_text
from qwen3_asr_stream.text.tokenizer import TextTokenizer

POLICY = PolicyOptions(update_interval_s=2.0, max_tokens_per_update=12, max_tokens_final=40, repetition_limit=0)


@pytest.fixture(scope="module")
def asr(checkpoints):
    folder = checkpoints["asr"]
    return load_model(folder), TextTokenizer.from_folder(folder)


def _utterance(model, tokenizer, uid=1, language=None, context=""):
    d = model.dims.audio
    spec = UtteranceSpec(*asr_prompt_ids(tokenizer, context, language))
    return Utterance(uid, spec, d.window_frames, d.window_tokens, d.num_mel_bins)


def _runner(model, tokenizer, policy, **kwargs):
    """The token-level runner with the text layer's end ids and character check."""
    return ModelRunner(model, policy, tokenizer.end_of_text_ids(),
                       lambda ids: not tokenizer.decode(list(ids)).endswith("\ufffd"), **kwargs)


def _from_scratch(model, tokenizer, audio, prefix, max_new, language=None):
    """Decode the whole audio so far with one prompt: what the official policy recomputes."""
    features = log_mel(torch.from_numpy(audio))
    encoded = model.encode_audio([features])[0]
    prompt = tokenizer.encode(asr_prompt_text(encoded.shape[0], "", language)) + list(prefix)
    return greedy_generate(model, [prompt], [encoded], StopRules(tokenizer.end_of_text_ids(), max_new))[0]


def _chunks(total: int, rng: np.random.Generator):
    """Chunk sizes from 10 ms to 2 s."""
    pos = 0
    while pos < total:
        size = int(rng.choice([160, 320, 800, 1600, 4800, 16000, 32000]))
        yield pos, min(total, pos + size)
        pos += size


@pytest.mark.parametrize("language", [None, "English"])
def test_each_update_equals_decoding_from_scratch(asr, language):
    model, tokenizer = asr
    runner = _runner(model, tokenizer, POLICY)
    audio = tone_mix(19.3, seed=31)
    utt = _utterance(model, tokenizer, language=language)
    rng = np.random.default_rng(3)
    next_update, updates = 2.0, 0
    for start, end in _chunks(audio.shape[0], rng):
        utt.append(audio[start:end])
        if end / 16000 < next_update:
            continue
        next_update += 2.0
        result = runner.update([(utt, False)])[0]
        prefix = result.tokens[: result.prefix_tokens]
        expected = _from_scratch(model, tokenizer, audio[:end], prefix, POLICY.max_tokens_per_update, language)
        assert list(result.tokens[result.prefix_tokens :]) == expected, f"update at {end / 16000:.2f} s"
        updates += 1
    assert updates >= 8  # the utterance crossed two 8 s windows
    assert utt.committed_windows == 2

    final = runner.update([(utt, True)])[0]
    offline = Transcriber(model, tokenizer).transcribe(
        [audio], TranscribeOptions(language=language, max_new_tokens=POLICY.max_tokens_final)
    )[0]
    assert final.is_final and final.prefix_tokens == 0
    language_, text, _ = text_of(tokenizer, _TextState(language), final)
    assert (language_, text) == (offline.language, offline.text)


def test_update_work_is_bounded_by_what_is_new(asr):
    """Encoder frames and decoder positions per update do not grow with the utterance."""
    model, tokenizer = asr
    runner = _runner(model, tokenizer, POLICY)
    dims = model.dims.audio
    audio = tone_mix(30.5, seed=5)
    audio[:1600] *= 3.0  # the loudest frame comes first, so the log floor never moves later
    utt = _utterance(model, tokenizer)
    tail = len(utt.spec.tail_ids)
    per_update = []
    for end in range(32000, audio.shape[0] + 1, 32000):
        utt.append(audio[end - 32000 : end])
        before = utt.committed_windows
        result = runner.update([(utt, False)])[0]
        newly_completed = utt.committed_windows - before
        assert result.windows_reencoded == 0
        # The open window plus windows that completed since the last update.
        assert result.encoder_frames <= dims.window_frames * (1 + newly_completed)
        head = utt.head_length if before == 0 and end == 32000 else 0
        # The draft (the rolled-back tokens, verified in the prefill) is the only other work.
        assert result.draft_tokens <= POLICY.max_tokens_per_update
        bound = (head + dims.window_tokens * (1 + newly_completed) + tail + result.prefix_tokens
                 + result.draft_tokens + POLICY.max_tokens_per_update)
        assert result.decoder_positions <= bound
        # Convolutions: the 2 s of new audio and the chunk that was not final at the last update;
        # the open window's earlier chunks (and a completing window's) are kept from before.
        assert result.encoder_chunks <= (2 if end == 32000 else 3)
        per_update.append((end / 16000, result.encoder_frames, result.decoder_positions))
    # From scratch, an update at 30 s would encode 3000 frames and run ~400 positions.
    late = [frames for t, frames, _ in per_update if t > 10]
    assert max(late) <= 2 * dims.window_frames
    assert max(p for _, _, p in per_update[4:]) < (2 * dims.window_tokens + tail + 2 * POLICY.max_tokens_per_update
                                                   + POLICY.max_tokens_per_update + 8)


def test_louder_audio_later_reencodes_stale_windows_for_the_final_only(asr):
    """When the log floor moves, an interim keeps its committed windows (no re-encode) and the
    final re-encodes the stale ones: the final stays exactly from-scratch."""
    model, tokenizer = asr
    runner = _runner(model, tokenizer, POLICY)
    audio = tone_mix(18.0, seed=8) * 0.05
    audio[16000 * 9 :] *= 40  # much louder after the first window completed
    audio = np.clip(audio, -1, 1).astype(np.float32)
    utt = _utterance(model, tokenizer)
    utt.append(audio[: 16000 * 9])
    runner.update([(utt, False)])
    utt.append(audio[16000 * 9 :])
    interim = runner.update([(utt, False)])[0]
    assert interim.windows_reencoded == 0
    assert interim.encoder_frames <= 2 * model.dims.audio.window_frames  # the new and the open window only
    assert utt.features.stale_from(utt.features.update(audio)[1]) == 0  # the precondition: window 0 is stale
    final = runner.update([(utt, True)])[0]
    assert final.windows_reencoded >= 1
    expected = _from_scratch(model, tokenizer, audio, (), POLICY.max_tokens_final)
    assert list(final.tokens) == expected


def test_batched_streams_give_the_tokens_of_each_alone(asr):
    model, tokenizer = asr
    audios = [tone_mix(s, seed=40 + i) for i, s in enumerate([3.3, 9.1, 12.7, 0.8, 6.0])]

    def run(batched: bool):
        runner = _runner(model, tokenizer, POLICY)
        utts = [_utterance(model, tokenizer, uid=i + 1) for i in range(len(audios))]
        out = {u.id: [] for u in utts}
        for step in range(1, 8):
            for u, a in zip(utts, audios):
                u.append(a[(step - 1) * 32000 : step * 32000])
            live = [u for u, a in zip(utts, audios) if (step - 1) * 32000 < a.shape[0]]
            groups = [live] if batched else [[u] for u in live]
            for group in groups:
                for r in runner.update([(u, False) for u in group]):
                    out[r.utterance_id].append(r.tokens)
        groups = [utts] if batched else [[u] for u in utts]
        for group in groups:
            for r in runner.update([(u, True) for u in group]):
                out[r.utterance_id].append(r.tokens)
        return out

    assert run(batched=True) == run(batched=False)


def test_engine_thread_serves_many_streams(asr):
    """(The order finals-first is asserted by test_finals_go_first_then_the_oldest_interim.)"""
    model, tokenizer = asr
    results, done = {}, threading.Event()
    lock = threading.Lock()
    options = EngineOptions(max_batch=8, max_utterances=6, policy=POLICY)
    with StreamingEngine(model, tokenizer, options) as engine:
        ids = []

        def callback(result):
            with lock:
                results.setdefault(result.utterance_id, []).append(result)
                if sum(r.is_final for rs in results.values() for r in rs) == 6:
                    done.set()

        for i in range(6):
            ids.append(engine.open(UtteranceOptions(), callback))
        with pytest.raises(EngineFull):
            engine.open(UtteranceOptions(), callback)
        audios = [tone_mix(4.5, seed=60 + i) for i in range(6)]
        for start in range(0, 72000, 8000):
            for uid, a in zip(ids, audios):
                engine.push(uid, a[start : start + 8000])
        for uid in ids:
            engine.finish(uid)
        assert done.wait(120)
        stats = engine.stats()
    assert stats.open_utterances == 0
    for uid, a in zip(ids, audios):
        finals = [r for r in results[uid] if r.is_final]
        assert len(finals) == 1 and results[uid][-1].is_final
        assert finals[0].audio_samples == a.shape[0]
        # Interims were coalesced: never more than one per 2 s of audio.
        assert len(results[uid]) - 1 <= 2
    # The final of each stream equals that stream decoded alone.
    alone = _runner(model, tokenizer, POLICY)
    utt = _utterance(model, tokenizer)
    utt.append(audios[0])
    assert alone.update([(utt, True)])[0].tokens == finals_of(results, ids[0]).tokens


def finals_of(results, uid):
    return next(r for r in results[uid] if r.is_final)


def test_stable_text_never_changes_once_shown(asr):
    model, tokenizer = asr
    policy = PolicyOptions(update_interval_s=1.0, max_tokens_per_update=6, rollback_tokens=3, unfixed_updates=1,
                           repetition_limit=0)
    runner = _runner(model, tokenizer, policy)
    audio = tone_mix(12.0, seed=77)
    utt = _utterance(model, tokenizer)
    shown: list[tuple[int, ...]] = []
    for end in range(16000, audio.shape[0] + 1, 16000):
        utt.append(audio[end - 16000 : end])
        r = runner.update([(utt, False)])[0]
        stable = r.tokens[: r.prefix_tokens]
        for earlier in shown:
            assert stable[: len(earlier)] == earlier
        shown.append(stable)
    assert len(shown[-1]) > 0


def test_repetition_guard_cuts_a_decoding_loop(asr):
    assert repetition_detected([1, 2, 3, 4, 3, 4, 3, 4], limit=3, max_pattern=4) == 2
    assert repetition_detected([5, 5, 5], limit=3, max_pattern=2) == 1
    assert repetition_detected([1, 2, 3, 4, 5, 6], limit=2, max_pattern=3) == 0
    model, tokenizer = asr
    loose = _runner(model, tokenizer, PolicyOptions(max_tokens_final=60, repetition_limit=0))
    guarded = _runner(model, tokenizer, PolicyOptions(max_tokens_final=60, repetition_limit=4))
    audio = tone_mix(3.0, seed=90)
    a, b = _utterance(model, tokenizer, 1), _utterance(model, tokenizer, 2)
    a.append(audio)
    b.append(audio)
    unguarded = loose.update([(a, True)])[0].tokens
    cut = guarded.update([(b, True)])[0].tokens
    assert cut == unguarded[: len(cut)]
    if repetition_detected(list(unguarded), 4, 8):
        assert len(cut) < len(unguarded)
        assert not repetition_detected(list(cut), 4, 8)


def test_rollback_never_ends_inside_a_character(asr):
    _, tokenizer = asr
    ids = tokenizer.encode("ab 你好")
    state = HypothesisState(tokens=ids + tokenizer.encode("世"), stable=0, updates=5)
    for k in range(0, 4):
        prefix = choose_prefix(state, PolicyOptions(rollback_tokens=k),
                               lambda ids: not tokenizer.decode(list(ids)).endswith("\ufffd"))
        assert "\ufffd" not in tokenizer.decode(prefix)


def test_silence_shorter_than_one_window_gives_an_empty_final(asr):
    model, tokenizer = asr
    runner = _runner(model, tokenizer, POLICY)
    utt = _utterance(model, tokenizer)
    utt.append(np.zeros(200, dtype=np.float32))  # less than one STFT window
    result = runner.update([(utt, True)])[0]
    assert result.is_final and result.tokens == ()
    assert text_of(tokenizer, _TextState(None), result)[1] == ""


def test_each_utterance_can_have_its_own_update_cadence(asr):
    model, tokenizer = asr
    counts: dict[int, int] = {}
    finals: list[int] = []
    done = threading.Event()

    def callback(result):
        counts[result.utterance_id] = counts.get(result.utterance_id, 0) + (not result.is_final)
        if result.is_final:
            finals.append(result.utterance_id)
            if len(finals) == 2:
                done.set()

    with StreamingEngine(model, tokenizer, EngineOptions(policy=POLICY)) as engine:
        fast = engine.open(UtteranceOptions(update_interval_s=0.5), callback)
        slow = engine.open(UtteranceOptions(), callback)  # the policy's 2 s
        audio = tone_mix(4.0, seed=9)
        for start in range(0, audio.shape[0], 8000):  # 0.5 s at a time, slowly enough to be served
            engine.push(fast, audio[start : start + 8000])
            engine.push(slow, audio[start : start + 8000])
            threading.Event().wait(0.15)
        engine.finish(fast)
        engine.finish(slow)
        assert done.wait(60)
    assert counts[fast] > counts[slow] >= 1


def test_fixed_shape_decode_steps_give_the_tokens_of_the_dynamic_path(asr):
    """The GPU decode path (preallocated bucketed batch caches, fixed-shape steps that CUDA
    graphs capture) run eagerly on the CPU: the same tokens as the dynamic path."""
    model, tokenizer = asr
    audios = [tone_mix(s, seed=70 + i) for i, s in enumerate([2.5, 9.3, 5.1])]

    def run(static: bool):
        runner = _runner(model, tokenizer, POLICY, static_decode=static)
        runner.warm_up()
        utts = [_utterance(model, tokenizer, uid=i + 1) for i in range(len(audios))]
        out = []
        for u, a in zip(utts, audios):
            u.append(a)
        out += [r.tokens for r in runner.update([(u, False) for u in utts])]
        out += [r.tokens for r in runner.update([(u, False) for u in utts[:1]])]
        out += [r.tokens for r in runner.update([(u, True) for u in utts])]
        return out, runner

    dynamic, _ = run(False)
    static, runner = run(True)
    assert static == dynamic
    # Every bucket was prepared at warm-up, none while decoding.
    assert runner.graphs is not None and runner.graphs.captures == len(runner.graphs.shapes) > 1


def test_finals_go_first_then_the_oldest_interim(asr):
    """With one row per batch, a final requested last is served first, then interims oldest first."""
    model, tokenizer = asr
    order = []
    done = threading.Event()

    def callback(result):
        order.append((result.utterance_id, result.is_final))
        if len(order) == 3:
            done.set()

    with StreamingEngine(model, tokenizer, EngineOptions(max_batch=1, policy=POLICY)) as engine:
        older, newer, ending = (engine.open(UtteranceOptions(), callback) for _ in range(3))
        with engine.core.worker.cond:  # the worker takes nothing until all three requests wait
            engine.push(older, tone_mix(2.5, seed=1))  # an interim, requested first
            engine.push(newer, tone_mix(2.5, seed=2))  # an interim, requested second
            engine.push(ending, tone_mix(1.0, seed=3))
            engine.finish(ending)  # a final, requested last
        assert done.wait(60)
    assert order == [(ending, True), (older, False), (newer, False)]


def test_a_flooding_utterance_does_not_starve_real_time_ones(asr):
    """Fairness: one utterance pushes audio as fast as it can (interims due every 0.1 s of
    audio) beside three real-time ones. Requests are served oldest first and an utterance
    waits with at most one request, so every request waits at most
    ceil(utterances / max_batch) batches plus the one running: 3 here."""
    model, tokenizer = asr
    options = EngineOptions(max_batch=2, policy=POLICY)
    lock = threading.Lock()
    waiting: dict[int, list[int]] = {}  # uid -> batch counts when its unserved requests were raised
    waits: dict[int, list[int]] = {}
    finals = threading.Event()
    final_count = [0]

    with StreamingEngine(model, tokenizer, options) as engine:
        core = engine.core

        def callback(result):
            with lock:
                raised = waiting.pop(result.utterance_id, [])
                if raised and not result.is_final:
                    waits.setdefault(result.utterance_id, []).append(core._batches - min(raised))
                if result.is_final:
                    final_count[0] += 1
                    if final_count[0] == 4:
                        finals.set()

        def push(uid, chunk, due):
            with core.worker.cond:  # read the batch count and raise the request atomically
                if due:
                    with lock:
                        waiting.setdefault(uid, []).append(core._batches)
                engine.push(uid, chunk)

        flood = engine.open(UtteranceOptions(update_interval_s=0.1), callback)
        live = [engine.open(UtteranceOptions(update_interval_s=0.5), callback) for _ in range(3)]
        flood_audio = tone_mix(40.0, seed=21)
        live_audio = [tone_mix(6.0, seed=22 + i) for i in range(3)]

        def flooder():
            for start in range(0, flood_audio.shape[0], 1600):  # ~30x real time
                push(flood, flood_audio[start : start + 1600], due=True)
                threading.Event().wait(0.003)
            engine.finish(flood)

        thread = threading.Thread(target=flooder)
        thread.start()
        for step, start in enumerate(range(0, 6 * 16000, 4000)):  # 0.25 s per push, an interim every 2nd
            for uid, audio in zip(live, live_audio):
                push(uid, audio[start : start + 4000], due=step % 2 == 1)
            threading.Event().wait(0.05)
        thread.join(60)
        for uid in live:
            engine.finish(uid)
        assert finals.wait(120)
    served = [w for uid in live for w in waits.get(uid, [])]
    assert all(len(waits.get(uid, [])) >= 2 for uid in live)  # the real-time utterances got interims
    assert len(waits.get(flood, [])) > 5  # and the flooder kept asking
    assert max(served) <= 3


def _stream_in_chunks(model, tokenizer, audio, policy, even: bool, chunk: int = 1600):
    """One utterance through the engine thread, in ``chunk``-sample pieces, each served before the next."""
    engine = StreamingEngine(model, tokenizer, EngineOptions(max_utterance_s=audio.shape[0] / 16000 + 1,
                                                             policy=policy, even_updates=even))
    results = []
    with engine:
        uid = engine.open(UtteranceOptions(), results.append)
        for start in range(0, audio.shape[0], chunk):
            engine.push(uid, audio[start : start + chunk])
            assert engine.core.wait_idle(60)
        engine.finish(uid)
        assert engine.core.wait_idle(60)
        stats = engine.stats()
    assert results and results[-1].is_final and not any(r.error for r in results)
    return [r for r in results if not r.is_final], results[-1], stats


@pytest.mark.parametrize("interval", [2.0, 3.0])
def test_even_updates_never_encode_more_than_one_window_and_stay_exact(asr, interval):
    """Across window boundaries no interim encodes more than one window's frames (the plain cadence
    encodes a completed window again beside the open one), every interim still equals decoding its
    audio from scratch, and the final equals the plain cadence's."""
    model, tokenizer = asr
    window = model.dims.audio.window_frames
    policy = PolicyOptions(update_interval_s=interval, max_tokens_per_update=12, max_tokens_final=40,
                           repetition_limit=0)
    audio = tone_mix(19.5, seed=21)
    audio[:1600] *= 3.0  # the loudest frame first: the log floor never moves, interims are exact
    plain, plain_final, _ = _stream_in_chunks(model, tokenizer, audio, policy, even=False)
    even, even_final, stats = _stream_in_chunks(model, tokenizer, audio, policy, even=True)
    assert max(r.encoder_frames for r in plain) > window  # the precondition: the plain cadence does
    assert max(r.encoder_frames for r in even) <= window
    assert len(even) >= len(plain) - 1  # (one due just before the end may wait for audio that never comes)
    for r in even:
        prefix = r.tokens[: r.prefix_tokens]
        expected = _from_scratch(model, tokenizer, audio[: r.audio_samples], prefix, policy.max_tokens_per_update)
        assert list(r.tokens[r.prefix_tokens :]) == expected, f"interim at {r.audio_samples / 16000:.3f} s"
    assert even_final.tokens == plain_final.tokens and even_final.audio_samples == audio.shape[0]
    if interval == 2.0:
        # The cadence meets the boundaries: the interims due there waited for the windows and
        # committed them; they cover the audio through the window.
        assert stats.commits == 0
        ends = [r.audio_samples for r in even]
        assert 128040 in ends and 256040 in ends
    else:
        assert stats.commits == 2  # at 8 and 16 s, between the updates at 6 and 9, 15 and 18 s


def test_interim_tokens_keep_the_log_probability_they_were_decoded_with(asr):
    """An interim's log-probabilities: one per token; the new tokens' are those of decoding from
    scratch with the same prefix, and a prefix token fed back keeps the value of the update that
    decoded it (so an interim's confidence is measured, as a final's)."""
    model, tokenizer = asr
    policy = PolicyOptions(update_interval_s=1.0, max_tokens_per_update=6, rollback_tokens=3, unfixed_updates=1,
                           repetition_limit=0)
    runner = _runner(model, tokenizer, policy)
    audio = tone_mix(9.0, seed=77)
    utt = _utterance(model, tokenizer)
    decoded: dict[tuple[int, ...], float] = {}  # token position path -> log-probability when decoded
    carried = 0
    for end in range(16000, audio.shape[0] + 1, 16000):
        utt.append(audio[end - 16000 : end])
        r = runner.update([(utt, False)])[0]
        assert len(r.logprobs) == len(r.tokens) and all(p <= 0 for p in r.logprobs)
        for i in range(r.prefix_tokens):
            assert r.logprobs[i] == decoded[r.tokens[: i + 1]]
            carried += 1
        features = log_mel(torch.from_numpy(audio[:end]))
        encoded = model.encode_audio([features])[0]
        prefix = list(r.tokens[: r.prefix_tokens])
        prompt = tokenizer.encode(asr_prompt_text(encoded.shape[0], "", None)) + prefix
        row = DecodeRow(model.new_row_cache(len(prompt) + policy.max_tokens_per_update + 1), prompt,
                        StopRules(tokenizer.end_of_text_ids(), policy.max_tokens_per_update), encoded, history=prefix)
        decode(model, [row])
        assert row.tokens == list(r.tokens[r.prefix_tokens:])
        assert list(r.logprobs[r.prefix_tokens:]) == pytest.approx(row.logprobs, abs=1e-4)
        for i in range(r.prefix_tokens, len(r.tokens)):
            decoded[r.tokens[: i + 1]] = r.logprobs[i]
    assert carried > 0
    final = runner.update([(utt, True)])[0]
    assert final.prefix_tokens == 0 and len(final.logprobs) == len(final.tokens)
