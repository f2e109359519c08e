"""Streaming engine benchmarks.

``final``: final latency after the end of speech at 2, 5, 10, 20 and 30 s, with no
draft, a fully right draft (the no-draft tokens as the last hypothesis) and a wrong
one, beside one interim update at that point.

``step``: the engine's decode step (from two updates differing only in their number
of new tokens) against a bare model step at the same cache length.

``policy``: update latency 4, 12, 20 and 30 s into one utterance, ours (incremental:
open window, cached audio KV, rolled-back tokens verified as a draft; timed through
the engine thread) against the official streaming policy run with the official
implementation (all audio so far again, plus the same prefix ids). Both sides
generate the same fixed number of tokens per update (end-of-text is ignored), in
float32, on the same weights and audio. Medians and ratios.

``updates``: every interim update of one utterance streamed to ``--seconds`` (an update
every 2 s of audio, pushed in 100 ms chunks), with the audio 4x louder from
``--louder-at`` on (the log-mel floor moves there): each update's compute time and its
ratio to the utterance's median update (goal: none above 1.5x), the plain cadence and
even updates (windows committed between updates) side by side.

``load``: N simulated real-time streams through one engine (audio pushed in 100 ms
chunks at real-time pace, interim updates at the policy cadence, a final at the
end): first-partial latency, p50/p95 update latency (from the moment an update is
due to its result), final latency, and audio seconds processed per wall second.
On CPU, ``--find-capacity`` raises N until p95 update latency exceeds the update
period. On a GPU: ``--device cuda --dtype bfloat16 --concurrency 1,32,128,256``.

    python benchmarks/bench_engine.py final [--quantize int8] [--points 2,5,10,20,30] [--quick]
    python benchmarks/bench_engine.py step [--quantize int8] [--quick]
    python benchmarks/bench_engine.py policy [--model DIR] [--tokens 10] [--ours-quantize int8] [--quick]
    python benchmarks/bench_engine.py updates [--quantize int8] [--seconds 30] [--louder-at 20] [--quick]
    python benchmarks/bench_engine.py load [--model DIR] [--device cpu] [--dtype float32] \\
        [--concurrency 1,2] [--find-capacity] [--seconds 12] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import threading
import time

from common import checkpoint, median_time, paired_medians, percentile, print_table, write_results

import numpy as np
import torch


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    audio = sum(rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(150, 2000) * t) for _ in range(3))
    audio = audio * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return np.clip(audio, -1, 1).astype(np.float32)


def _stream_to(runner, utt, audio, point_s: float, interval_s: float = 2.0) -> None:
    """Bring an utterance to ``point_s`` the way a stream does: an interim every ``interval_s``."""
    step = int(interval_s * 16000)
    while utt.samples < int(point_s * 16000):
        end = min(utt.samples + step, int(point_s * 16000))
        utt.append(audio[utt.samples : end])
        runner.update([(utt, False)])


def run_final(args) -> None:
    """Final latency after the end of speech: no draft / a right draft / a wrong draft."""
    import copy
    import dataclasses

    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.engine.options import PolicyOptions
    from qwen3_asr_stream.engine.runner import ModelRunner
    from qwen3_asr_stream.engine.utterance import Utterance, UtteranceSpec
    from qwen3_asr_stream.text.prompts import asr_prompt_ids
    from qwen3_asr_stream.text.tokenizer import TextTokenizer

    folder = checkpoint("tiny-asr" if args.quick else args.preset, args.model)
    model = load_model(folder, LoadOptions(device=args.device, dtype=args.dtype, quantize=args.quantize))
    tokenizer = TextTokenizer.from_folder(folder)
    label = f"{args.device}-{args.quantize or args.dtype}"
    dims = model.dims.audio
    spec = UtteranceSpec(*asr_prompt_ids(tokenizer))
    points = [float(p) for p in args.points.split(",")]
    audio = speechlike(max(points), seed=3)
    rows, record = [], {"quantize": args.quantize, "tokens_per_second_of_audio": args.rate, "rows": []}
    for point in points:
        # Random weights rarely say end-of-text: bound the final at ~3.3 tokens per second of
        # speech (a 30 s utterance: 100 tokens), so every variant decodes the same tokens.
        tokens = max(4, round(point * args.rate))
        base = PolicyOptions(max_tokens_per_update=args.update_tokens, max_tokens_final=tokens, repetition_limit=0)
        runner = ModelRunner(model, base, (-1,))  # no end-of-text: a fixed number of tokens on every side
        utt = Utterance(1, spec, dims.window_frames, dims.window_tokens, dims.num_mel_bins)
        _stream_to(runner, utt, audio, point)
        saved = copy.deepcopy(utt.hypothesis)
        runner.policy = dataclasses.replace(base, draft=False)
        started = time.perf_counter()
        first = runner.update([(utt, True)])[0]  # pays any re-encode of windows a moved log floor made stale
        first_ms = (time.perf_counter() - started) * 1e3
        truth = first.tokens
        wrong = [(t + 7) % 150000 for t in truth]

        def final(draft, hypothesis):
            def run():
                runner.policy = dataclasses.replace(base, draft=draft)
                utt.hypothesis = copy.deepcopy(saved)
                utt.hypothesis.tokens = list(hypothesis)
                utt.draft_kept = 1.0  # the whole draft is offered (best and worst case by design)
                return runner.update([(utt, True)])[0]
            return run

        def interim():
            runner.policy = base
            utt.hypothesis = copy.deepcopy(saved)
            return runner.update([(utt, False)])[0]

        variants = {"no draft": final(False, truth), "right draft": final(True, truth),
                    "wrong draft": final(True, wrong), "interim": interim}
        times = {name: [] for name in variants}
        steps, reencoded = {}, {}
        for _ in range(args.repeats):
            for name, fn in variants.items():
                started = time.perf_counter()
                result = fn()
                times[name].append(time.perf_counter() - started)
                steps[name] = result.decode_steps
                reencoded[name] = result.windows_reencoded
        med = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        rows.append([f"{point:g} s", len(truth), med["no draft"], med["right draft"], med["wrong draft"],
                     med["interim"], med["right draft"] / med["interim"], med["wrong draft"] / med["no draft"]])
        record["rows"].append({"seconds": point, "tokens": len(truth), "ms": med, "decode_steps": steps,
                               "windows_reencoded": reencoded})
        record["rows"][-1]["first_final"] = {"ms": first_ms, "windows_reencoded": first.windows_reencoded}
        print({"decode_steps": steps, "windows_reencoded": reencoded, "first final (no draft) ms": first_ms,
               "its windows re-encoded": first.windows_reencoded}, flush=True)
        print(rows[-1], flush=True)
    print_table(f"final latency after the end of speech ({label}; medians of {args.repeats}, ms)",
                ["utterance", "tokens", "no draft", "right draft", "wrong draft", "interim",
                 "right/interim", "wrong/none"], rows)
    write_results(f"engine-final-{label}" + ("-quick" if args.quick else ""), record)


def run_policy(args) -> None:
    """One interim update at 4..30 s, ours (through the engine thread) against the official
    policy (everything again), both generating the same number of tokens after the same
    prefix ids (the official prompt gets our prefix as ids, not as re-tokenized text)."""
    import copy

    from qwen_asr import Qwen3ASRModel

    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.engine.text_layer import StreamingEngine
    from qwen3_asr_stream.engine.options import EngineOptions, PolicyOptions, UtteranceOptions
    from qwen3_asr_stream.engine.utterance import Request
    from qwen3_asr_stream.text.tokenizer import TextTokenizer

    folder = checkpoint("tiny-asr" if args.quick else args.preset, args.model)
    tokens = args.tokens
    policy = PolicyOptions(max_tokens_per_update=tokens, repetition_limit=0, update_interval_s=2.0)
    model = load_model(folder, LoadOptions(dtype=args.ours_dtype, quantize=args.ours_quantize))
    tokenizer = TextTokenizer.from_folder(folder)
    official = Qwen3ASRModel.from_pretrained(str(folder), dtype=torch.float32, max_new_tokens=tokens)
    points = [int(p) for p in args.points.split(",")]
    audio = speechlike(max(points), seed=1)
    ours_label = args.ours_quantize or args.ours_dtype
    record = {"tokens_per_update": tokens, "official_dtype": "float32", "ours": ours_label, "rows": []}
    rows = []
    engine = StreamingEngine(model, tokenizer, EngineOptions(max_utterance_s=max(points) + 1, policy=policy))
    runner = engine.core.runner  # no end-of-text: the same number of new tokens on both sides
    runner.stop = dataclasses.replace(runner.stop, end_ids=(-1,))
    done = threading.Event()
    results = []

    def callback(result):
        results.append(result)
        done.set()

    with engine:
        uid = engine.open(UtteranceOptions(), callback)
        entry = engine.core._entries[uid]
        utt = entry.utterance

        def ours_update():
            utt.hypothesis = copy.deepcopy(saved)
            done.clear()
            with engine.core.worker.cond:
                utt.request = Request.INTERIM
                entry.requested_at = time.monotonic()
                engine.core.worker.cond.notify()
            done.wait(600)
            return results[-1]

        fed = 0
        for point in points:
            while fed < point * 16000:  # an interim every 2 s, as a stream gets them
                step = min(32000, point * 16000 - fed)
                done.clear()
                engine.push(uid, audio[fed : fed + step])
                fed += step
                done.wait(600)
            saved = copy.deepcopy(utt.hypothesis)
            probe = ours_update()
            prefix_ids = list(probe.tokens[: probe.prefix_tokens])
            clip = audio[: point * 16000]
            prompt = official._build_text_prompt("", None)

            def official_update():
                inputs = official.processor(text=[prompt], audio=[clip], return_tensors="pt", padding=True)
                prefix = torch.tensor([prefix_ids], dtype=inputs["input_ids"].dtype)
                inputs["input_ids"] = torch.cat([inputs["input_ids"], prefix], dim=1)
                inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(prefix)], dim=1)
                with torch.inference_mode():
                    return official.model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens)

            off_t, ours_t = paired_medians(official_update, ours_update, args.repeats, warmup=0)
            last = results[-1]
            rows.append([f"{point} s", len(prefix_ids), off_t * 1e3, ours_t * 1e3, off_t / ours_t,
                         last.accepted_tokens, last.decode_steps])
            record["rows"].append({"seconds": point, "prefix_tokens": len(prefix_ids), "official_ms": off_t * 1e3,
                                   "ours_ms": ours_t * 1e3, "official_over_ours": off_t / ours_t,
                                   "draft_accepted": last.accepted_tokens, "decode_steps": last.decode_steps})
            print(rows[-1], flush=True)
    print_table(f"interim update ({tokens} new tokens after the same prefix ids; official float32, ours "
                f"{ours_label} through the engine thread; medians, ms)",
                ["audio so far", "prefix tokens", "official policy", "ours", "ratio", "draft kept", "steps"], rows)
    suffix = "" if ours_label == "float32" else f"-{ours_label}"
    write_results(("engine-policy" if not args.quick else "engine-policy-quick") + suffix, record)


def run_step(args) -> None:
    """The engine's decode step against a bare model step at the same cache length."""
    import dataclasses

    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.engine.options import PolicyOptions
    from qwen3_asr_stream.engine.runner import ModelRunner
    from qwen3_asr_stream.engine.utterance import Utterance, UtteranceSpec
    from qwen3_asr_stream.text.prompts import asr_prompt_ids
    from qwen3_asr_stream.text.tokenizer import TextTokenizer

    folder = checkpoint("tiny-asr" if args.quick else args.preset, args.model)
    model = load_model(folder, LoadOptions(quantize=args.quantize))
    tokenizer = TextTokenizer.from_folder(folder)
    dims = model.dims.audio
    base = PolicyOptions(max_tokens_per_update=1, repetition_limit=0, draft=False)
    runner = ModelRunner(model, base, (-1,))
    utt = Utterance(1, UtteranceSpec(*asr_prompt_ids(tokenizer)), dims.window_frames, dims.window_tokens,
                    dims.num_mel_bins)
    _stream_to(runner, utt, speechlike(30, seed=2), 30)
    many = 10

    def update(n):
        def run():
            runner.policy = dataclasses.replace(base, max_tokens_per_update=n)
            return runner.update([(utt, False)])
        return run

    one, ten = paired_medians(update(1), update(many), args.repeats)
    engine_step = (ten - one) / (many - 1)
    cache = model.new_row_cache(utt.cache.length + 4)
    with torch.inference_mode():
        model.decoder.forward_rows(model.embed(torch.zeros(1, utt.cache.length, dtype=torch.long)), [cache],
                                   [utt.cache.length])
        token = torch.zeros(1, 1, dtype=torch.long)

        def bare():
            model.head(model.decoder.forward_rows(model.embed(token), [cache], [1])[:, 0])
            cache.truncate(cache.length - 1)

        bare_step, _ = median_time(bare, args.repeats * 3)
    label = args.quantize or "float32"
    rows = [[label, utt.cache.length, bare_step * 1e3, engine_step * 1e3, engine_step / bare_step]]
    print_table("decode step at 30 s (ms)", ["weights", "cache slots", "bare model step", "engine step", "ratio"], rows)
    write_results(f"engine-step-{label}", {"cache_slots": utt.cache.length, "bare_ms": bare_step * 1e3,
                                           "engine_ms": engine_step * 1e3})


def run_updates(args) -> None:
    """Each interim update of one utterance, against the median update of that utterance.

    Side by side in one run: the plain cadence (``even_updates=False``) and even updates
    (hold for a window about to complete, commit completed windows between updates).
    Audio arrives in ``--chunk`` pieces; after each, the engine finishes its due work
    (an engine that keeps up with real time).
    """
    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.engine.text_layer import StreamingEngine
    from qwen3_asr_stream.engine.options import EngineOptions, PolicyOptions, UtteranceOptions
    from qwen3_asr_stream.text.tokenizer import TextTokenizer

    folder = checkpoint("tiny-asr" if args.quick else args.preset, args.model)
    model = load_model(folder, LoadOptions(dtype=args.dtype, quantize=args.quantize))
    tokenizer = TextTokenizer.from_folder(folder)
    seconds = 10 if args.quick else args.seconds
    audio = speechlike(seconds, seed=2)
    if args.louder_at is not None and args.louder_at < seconds:
        louder = int(args.louder_at * 16000)
        audio[louder:] = np.clip(audio[louder:] * 4, -1, 1)
    policy = PolicyOptions(update_interval_s=args.interval, max_tokens_per_update=args.update_tokens)
    step = int(args.chunk * 16000)

    def stream(even: bool):
        engine = StreamingEngine(model, tokenizer,
                                 EngineOptions(max_utterance_s=seconds + 1, policy=policy, even_updates=even))
        results = []
        with engine:
            uid = engine.open(UtteranceOptions(), results.append)
            for start in range(0, len(audio), step):
                engine.push(uid, audio[start : start + step])
                engine.core.wait_idle(600)  # an engine that keeps up: due work done before the next chunk
            engine.cancel(uid)
            return [r for r in results if not r.is_final], engine.stats()

    label = args.quantize or args.dtype
    summary = {}
    for name, even in (("plain", False), ("even", True), ("plain again", False), ("even again", True)):
        interims, stats = stream(even)
        times = [r.compute_s * 1e3 for r in interims]
        median = statistics.median(times)
        rows = [[f"{r.audio_samples / 16000:.2f} s", t, t / median, r.encoder_frames, r.decoder_positions,
                 r.decode_steps] for r, t in zip(interims, times)]
        print_table(f"{name}: interim updates of one {seconds} s utterance ({label}; {args.chunk} s chunks; "
                    f"4x louder from {args.louder_at} s; median {median:.0f} ms)",
                    ["audio so far", "update ms", "/ median", "encoder frames", "decoder positions",
                     "decode steps"], rows)
        commit_ms = 1e3 * stats.commit_s / max(stats.commits, 1)
        print(f"{name}: largest update / median {max(times) / median:.2f} (goal <= 1.5); windows committed "
              f"between updates: {stats.commits} ({commit_ms:.0f} ms each)")
        summary[name] = {"median_ms": median, "max_ms": max(times), "max_over_median": max(times) / median,
                         "total_update_ms": sum(times), "commits": stats.commits, "commit_ms": commit_ms,
                         "updates": [{"audio_s": r.audio_samples / 16000, "ms": t, "encoder_frames": r.encoder_frames,
                                      "decoder_positions": r.decoder_positions, "decode_steps": r.decode_steps}
                                     for r, t in zip(interims, times)]}
    rows = [[name, v["median_ms"], v["max_ms"], v["max_over_median"], v["total_update_ms"] + v["commits"] * v["commit_ms"]]
            for name, v in summary.items()]
    print_table(f"summary ({label})", ["cadence", "median update ms", "largest ms", "largest / median",
                                       "all work ms"], rows)
    write_results(f"engine-updates{'-quick' if args.quick else ''}-{label}",
                  {"seconds": seconds, "louder_at": args.louder_at, "dtype": label, "chunk_s": args.chunk,
                   "interval_s": args.interval, "runs": summary})


def run_load_once(engine, concurrency: int, seconds: float, chunk_s: float = 0.1, timeout_s: float = 600.0) -> dict:
    """``concurrency`` real-time streams of ``seconds`` each through ``engine``; ``timeout_s``: how
    long to wait for the finals after the last audio (``finals`` says how many came)."""
    from qwen3_asr_stream.engine.options import UtteranceOptions

    interval = engine.options.policy.update_interval_s
    audio = [speechlike(seconds, seed=100 + i) for i in range(concurrency)]
    lock = threading.Lock()
    due: dict[int, list[float]] = {}
    latencies: list[float] = []
    first: list[float] = []
    finals: list[float] = []
    final_requested: dict[int, float] = {}
    done = threading.Event()
    seen_first: set[int] = set()

    def callback(result):
        now = time.perf_counter()
        with lock:
            if result.is_final:
                finals.append(now - final_requested[result.utterance_id])
                if len(finals) == concurrency:
                    done.set()
                return
            queue = due[result.utterance_id]
            # Results coalesce: the latest due time not after this result's audio.
            covered = [t for t in queue if t <= now]
            started = covered[-1] if covered else now
            latencies.append(now - started)
            if result.utterance_id not in seen_first:
                seen_first.add(result.utterance_id)
                first.append(now - started)
            queue.clear()

    ids = [engine.open(UtteranceOptions(), callback) for _ in range(concurrency)]
    for uid in ids:
        due[uid] = []
    chunk = int(chunk_s * 16000)
    step_samples = int(interval * 16000)
    started = time.perf_counter()
    for k, pos in enumerate(range(0, int(seconds * 16000), chunk)):
        target = started + k * chunk_s
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        for uid, a in zip(ids, audio):
            engine.push(uid, a[pos : pos + chunk])
            if (pos + chunk) % step_samples < chunk:
                with lock:
                    due[uid].append(time.perf_counter())
    for uid in ids:
        with lock:
            final_requested[uid] = time.perf_counter()
        engine.finish(uid)
    done.wait(timeout_s)
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "first_partial_ms": statistics.median(first) * 1e3 if first else float("nan"),
        "update_p50_ms": percentile(latencies, 50) * 1e3,
        "update_p95_ms": percentile(latencies, 95) * 1e3,
        "final_p50_ms": percentile(finals, 50) * 1e3,
        "final_p95_ms": percentile(finals, 95) * 1e3,
        "updates": len(latencies),
        "finals": len(finals),
        "audio_s_per_s": concurrency * seconds / wall,
    }


def run_load(args) -> None:
    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.engine.text_layer import StreamingEngine
    from qwen3_asr_stream.engine.options import EngineOptions, PolicyOptions
    from qwen3_asr_stream.text.tokenizer import TextTokenizer

    folder = checkpoint("tiny-asr" if args.quick else args.preset, args.model)
    model = load_model(folder, LoadOptions(dtype=args.dtype, device=args.device, quantize=args.quantize))
    tokenizer = TextTokenizer.from_folder(folder)
    policy = PolicyOptions(update_interval_s=args.interval)
    levels = [int(c) for c in args.concurrency.split(",")]
    options = EngineOptions(max_batch=args.max_batch, max_utterances=max(levels + [64]) * 2,
                            kv_budget_bytes=64 << 30, max_utterance_s=max(args.seconds + 5, 30), policy=policy)
    label = f"{args.device}-{args.quantize or args.dtype}"
    rows, record = [], {"device": args.device, "dtype": args.dtype, "quantize": args.quantize, "seconds": args.seconds,
                        "update_interval_s": args.interval, "levels": []}
    with StreamingEngine(model, tokenizer, options) as engine:
        run_load_once(engine, 1, min(args.seconds, 4.0))  # warm-up
        concurrency = levels[0]
        while True:
            stats = run_load_once(engine, concurrency, args.seconds)
            record["levels"].append(stats)
            rows.append([stats["concurrency"], stats["first_partial_ms"], stats["update_p50_ms"],
                         stats["update_p95_ms"], stats["final_p50_ms"], stats["audio_s_per_s"]])
            print(rows[-1], flush=True)
            within = stats["update_p95_ms"] < args.interval * 1e3
            if args.find_capacity:
                if not within or concurrency >= 64:
                    break
                record["capacity"] = concurrency
                concurrency += 1
                continue
            levels = levels[1:]
            if not levels:
                break
            concurrency = levels[0]
    print_table(f"simulated real-time streams ({label}, {args.seconds} s each, "
                f"updates every {args.interval} s)",
                ["streams", "first partial ms", "update p50 ms", "update p95 ms", "final p50 ms", "audio s/s"], rows)
    if args.find_capacity:
        print(f"streams held with p95 update latency under {args.interval} s: {record.get('capacity', 0)}")
    write_results(f"engine-load-{label}" + ("-quick" if args.quick else ""), record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("final")
    f.add_argument("--model")
    f.add_argument("--preset", default="asr-0.6b")
    f.add_argument("--quantize", default=None, choices=["int8"])
    f.add_argument("--device", default="cpu")
    f.add_argument("--dtype", default="float32")
    f.add_argument("--points", default="2,5,10,20,30")
    f.add_argument("--rate", type=float, default=10 / 3, help="final tokens per second of audio")
    f.add_argument("--update-tokens", type=int, default=10)
    f.add_argument("--repeats", type=int, default=1)
    f.add_argument("--quick", action="store_true")
    f.set_defaults(run=run_final)
    st = sub.add_parser("step")
    st.add_argument("--model")
    st.add_argument("--preset", default="asr-0.6b")
    st.add_argument("--quantize", default=None, choices=["int8"])
    st.add_argument("--repeats", type=int, default=3)
    st.add_argument("--quick", action="store_true")
    st.set_defaults(run=run_step)
    p = sub.add_parser("policy")
    p.add_argument("--model")
    p.add_argument("--preset", default="asr-0.6b")
    p.add_argument("--points", default="4,12,20,30")
    p.add_argument("--tokens", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ours-dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--ours-quantize", default=None, choices=["int8"], help="our side with int8 decoder weights")
    p.add_argument("--quick", action="store_true")
    p.set_defaults(run=run_policy)
    u = sub.add_parser("updates")
    u.add_argument("--model")
    u.add_argument("--preset", default="asr-0.6b")
    u.add_argument("--dtype", default="float32")
    u.add_argument("--quantize", default=None, choices=["int8"])
    u.add_argument("--seconds", type=int, default=30)
    u.add_argument("--louder-at", type=float, default=20.0)
    u.add_argument("--interval", type=float, default=2.0)
    u.add_argument("--update-tokens", type=int, default=10)
    u.add_argument("--chunk", type=float, default=0.1, help="seconds of audio per push")
    u.add_argument("--quick", action="store_true")
    u.set_defaults(run=run_updates)
    q = sub.add_parser("load")
    q.add_argument("--model")
    q.add_argument("--preset", default="asr-0.6b")
    q.add_argument("--device", default="cpu")
    q.add_argument("--dtype", default="float32")
    q.add_argument("--quantize", default=None, choices=["int8"])
    q.add_argument("--concurrency", default="1")
    q.add_argument("--find-capacity", action="store_true")
    q.add_argument("--seconds", type=float, default=12.0)
    q.add_argument("--interval", type=float, default=2.0)
    q.add_argument("--max-batch", type=int, default=32)
    q.add_argument("--quick", action="store_true")
    q.set_defaults(run=run_load)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
