"""Streaming engine benchmarks.

``policy``: update latency 4, 12, 20 and 30 s into one utterance, ours (incremental:
open window, cached audio KV) against the official streaming policy run with the
official implementation (all audio so far again, plus the rolled-back prefix).
Both sides generate the same fixed number of tokens per update (end-of-text is
ignored), in float32, on the same weights and audio. Medians and ratios.

``load``: N simulated real-time streams through one engine (audio pushed in 100 ms
chunks at real-time pace, interim updates at the policy cadence, a final at the
end): first-partial latency, p50/p95 update latency (from the moment an update is
due to its result), final latency, and audio seconds processed per wall second.
On CPU, ``--find-capacity`` raises N until p95 update latency exceeds the update
period. On a GPU: ``--device cuda --dtype bfloat16 --concurrency 1,32,128,256``.

    python benchmarks/bench_engine.py policy [--model DIR] [--tokens 8] [--quick]
    python benchmarks/bench_engine.py load [--model DIR] [--device cpu] [--dtype float32] \\
        [--concurrency 1,2] [--find-capacity] [--seconds 12] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from common import checkpoint, paired_medians, percentile, print_table, write_results

import numpy as np
import torch


def speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    audio = sum(rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(150, 2000) * t) for _ in range(3))
    audio = audio * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
    return np.clip(audio, -1, 1).astype(np.float32)


def run_policy(args) -> None:
    from qwen_asr import Qwen3ASRModel

    import qwen3_asr_stream.engine.runner as runner_module
    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.engine.options import PolicyOptions, UtteranceOptions
    from qwen3_asr_stream.engine.runner import ModelRunner
    from qwen3_asr_stream.engine.utterance import Utterance
    from qwen3_asr_stream.tokenizer import TextTokenizer

    folder = checkpoint("tiny-asr" if args.quick else args.preset, args.model)
    tokens = args.tokens
    runner_module.DEFAULT_EOS_IDS = ()  # a fixed number of tokens per update on our side
    policy = PolicyOptions(max_tokens_per_update=tokens, repetition_limit=0)
    model = load_model(folder, LoadOptions(dtype=args.ours_dtype, quantize=args.ours_quantize))
    tokenizer = TextTokenizer.from_folder(folder)
    runner = ModelRunner(model, tokenizer, policy)
    official = Qwen3ASRModel.from_pretrained(str(folder), dtype=torch.float32, max_new_tokens=tokens)

    points = [4, 12, 20, 30]
    audio = speechlike(max(points), seed=1)
    dims = model.dims.audio
    utt = Utterance(1, UtteranceOptions(), dims.window_frames, dims.window_tokens, dims.num_mel_bins)
    ours_label = args.ours_quantize or args.ours_dtype
    rows, record = [], {"tokens_per_update": tokens, "official_dtype": "float32", "ours": ours_label, "rows": []}
    fed = 0
    for point in points:
        # Bring the utterance to this point the way a stream does: an update every 2 s.
        while fed < point * 16000:
            step = min(32000, point * 16000 - fed)
            utt.append(audio[fed : fed + step])
            fed += step
            if fed < point * 16000:
                runner.update([(utt, False)])
        runner.update([(utt, False)])
        prefix_ids = list(utt.hypothesis.tokens[: max(0, len(utt.hypothesis.tokens) - policy.rollback_tokens)])
        prefix_text = tokenizer.decode(prefix_ids)
        prompt = official._build_text_prompt("", None) + prefix_text
        clip = audio[: point * 16000]

        def official_update():
            inputs = official.processor(text=[prompt], audio=[clip], return_tensors="pt", padding=True)
            with torch.inference_mode():
                out = official.model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens)
            return out

        off_t, ours_t = paired_medians(official_update, lambda: runner.update([(utt, False)]), args.repeats,
                                       warmup=0)
        rows.append([f"{point} s", off_t * 1e3, ours_t * 1e3, off_t / ours_t])
        record["rows"].append({"seconds": point, "official_ms": off_t * 1e3, "ours_ms": ours_t * 1e3,
                               "official_over_ours": off_t / ours_t})
    print_table(f"update latency into an utterance ({tokens} tokens per update; official float32, ours "
                f"{ours_label}; medians, ms)", ["audio so far", "official policy", "ours", "ratio"], rows)
    flat = record["rows"][-1]["ours_ms"] / record["rows"][0]["ours_ms"]
    record["ours_30s_over_4s"] = flat
    print(f"ours at 30 s / ours at 4 s: {flat:.2f}")
    suffix = "" if ours_label == "float32" else f"-{ours_label}"
    write_results(("engine-policy" if not args.quick else "engine-policy-quick") + suffix, record)


def run_load_once(engine, concurrency: int, seconds: float, chunk_s: float = 0.1) -> dict:
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
    done.wait(600)
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "first_partial_ms": statistics.median(first) * 1e3 if first else float("nan"),
        "update_p50_ms": percentile(latencies, 50) * 1e3,
        "update_p95_ms": percentile(latencies, 95) * 1e3,
        "final_p50_ms": percentile(finals, 50) * 1e3,
        "final_p95_ms": percentile(finals, 95) * 1e3,
        "updates": len(latencies),
        "audio_s_per_s": concurrency * seconds / wall,
    }


def run_load(args) -> None:
    from qwen3_asr_stream.checkpoint import LoadOptions, load_model
    from qwen3_asr_stream.engine.engine import StreamingEngine
    from qwen3_asr_stream.engine.options import EngineOptions, PolicyOptions
    from qwen3_asr_stream.tokenizer import TextTokenizer

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
    p = sub.add_parser("policy")
    p.add_argument("--model")
    p.add_argument("--preset", default="asr-0.6b")
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ours-dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--ours-quantize", default=None, choices=["int8"], help="our side with int8 decoder weights")
    p.add_argument("--quick", action="store_true")
    p.set_defaults(run=run_policy)
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
