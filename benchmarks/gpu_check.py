"""One GPU session's checks, each stage guarded: a stage that fails is reported in the table
with its error, and the stages after it still run (those that need its output say so).

Stages (``--stages`` picks some, in this order):

* ``environment``: Python, torch, the device, the versions of the packages that matter;
* ``imports``: every module of the service and the client imports (a missing wheel shows
  here, named: ``missing module soxr``); modules of optional extras are left out;
* ``checkpoint``: a random checkpoint of ``--preset`` in the published layout (``--model``: a
  folder instead);
* ``cuda_tests``: ``pytest -m cuda`` over ``tests/test_cuda*.py`` (skipped, not failed, on the CPU);
* ``bf16_vs_fp32``: offline greedy tokens of the same recordings in bfloat16 and float32;
* ``graphs_vs_eager``: a batched final update with fixed-shape decode steps (CUDA graphs on a
  GPU) against eager steps: tokens and time, alternately timed;
* ``latency``: one real-time stream: time to the first partial (from the moment it is due),
  update p50 / p95, final latency after the last audio;
* ``speakers``: the WeSpeaker ResNet34 speaker model (random weights in pyannote's layout: the
  cost of the real ones) on the device and on one CPU thread: ms per window embedded alone, for
  one 10 s utterance (23 windows) and for a batch of many streams' windows, so how many streams
  ``serve --speaker-device`` keeps up with (one window per 0.4 s of each stream's speech);
* ``capacity``: the most real-time streams one engine holds with p95 update latency under
  ``--p95-ms``: doubling from 1, then bisection (to 1/8 of the bound), within a time budget;
  memory per stream (reserved cache, and the measured peak on CUDA);
* ``profile``: ``torch.profiler`` of one batched interim update at ``--profile-streams`` streams
  and at the capacity found: the top operators by self time (where the time goes).

Output: one table and ``gpu_check.json`` (rewritten after every stage, so a killed run keeps
what it measured), ``gpu_check.txt`` (the tables), ``cuda_tests.log`` and ``profiles.txt`` in
``--out``. Run through ``benchmarks/gpu_check.sh`` (installs the carried wheels first):

    bash benchmarks/gpu_check.sh                                   # CUDA, random 0.6B, bfloat16
    bash benchmarks/gpu_check.sh --device cpu --preset tiny-asr --quick   # the CPU dry run
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import gc
import json
import math
import os
import pkgutil
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from common import ROOT, greedy_tokens, paired_medians, print_table

# Modules of optional extras, not part of what a GPU server imports (each names its extra).
OPTIONAL_MODULES = {
    "qwen3_asr_client.mic": "mic extra (sounddevice)",
}
MAX_UTTERANCE_S = 30.0  # as serve's default endpointing (--max-utterance-ms 30000)
FINAL_TOKENS_PER_S = 10 / 3  # random weights never say end-of-text: finals are bounded like speech's text
STAGES = ["environment", "imports", "checkpoint", "cuda_tests", "bf16_vs_fp32", "graphs_vs_eager", "latency",
          "speakers", "capacity", "profile"]


class StageError(RuntimeError):
    """A stage cannot run (a stage it needs failed); reported as that stage's error."""


@dataclasses.dataclass
class Check:
    args: argparse.Namespace
    out: Path
    started: float = dataclasses.field(default_factory=time.monotonic)
    record: dict = dataclasses.field(default_factory=dict)
    folder: Path | None = None
    capacity: int | None = None
    models: dict = dataclasses.field(default_factory=dict)

    def left_s(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.started)

    def model(self, dtype: str):
        """The checkpoint loaded on the device in ``dtype`` (kept for the later stages)."""
        if self.folder is None:
            raise StageError("needs the checkpoint stage, which failed")
        if dtype not in self.models:
            from qwen3_asr_stream.checkpoint import LoadOptions, load_pretrained

            self.models[dtype] = load_pretrained(str(self.folder), LoadOptions(device=self.args.device, dtype=dtype))
        return self.models[dtype]

    def save(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.record, indent=2, default=str))


# -- stages -------------------------------------------------------------------------------------


def stage_environment(check: Check) -> dict:
    import torch

    info = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
            "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                    cuda=torch.version.cuda)
    from importlib.metadata import PackageNotFoundError, version

    for name in ("numpy", "grpcio", "protobuf", "tokenizers", "safetensors", "aiohttp", "soxr", "soundfile",
                 "nvidia-riva-client", "pytest"):
        try:
            info[name] = version(name)
        except PackageNotFoundError:
            info[name] = "absent"
    if check.args.device.startswith("cuda") and not torch.cuda.is_available():
        raise StageError(f"--device {check.args.device}, but torch {torch.__version__} sees no CUDA device")
    return info


def stage_imports(check: Check) -> dict:
    """Import every module of both packages; name each missing module and who needs it."""
    missing: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    count = 0
    for package in ("qwen3_asr_stream", "qwen3_asr_client"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.name in OPTIONAL_MODULES:
                continue
            try:
                importlib.import_module(info.name)
                count += 1
            except ModuleNotFoundError as exc:
                missing.setdefault((exc.name or str(exc)).split(".")[0], []).append(info.name)
            except Exception as exc:  # noqa: BLE001 - reported, the walk goes on
                failed[info.name] = f"{type(exc).__name__}: {exc}"
    result = {"modules_imported": count, "left_out": OPTIONAL_MODULES}
    if missing or failed:
        lines = [f"missing module {name} (needed by {', '.join(users)})" for name, users in missing.items()]
        lines += [f"{module}: {error}" for module, error in failed.items()]
        raise StageError("; ".join(lines))
    return result


def stage_checkpoint(check: Check) -> dict:
    if check.args.model:
        check.folder = Path(check.args.model)
        return {"folder": str(check.folder), "random": False}
    from qwen3_asr_stream.testing.checkpoints import PRESETS, write_checkpoint

    folder = Path(tempfile.mkdtemp(prefix=f"gpu-check-{check.args.preset}-"))
    write_checkpoint(folder, PRESETS[check.args.preset], seed=0, dtype=check.args.dtype)
    check.folder = folder
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {"folder": str(folder), "random": True, "preset": check.args.preset, "dtype": check.args.dtype,
            "gib": round(size / 2**30, 3)}


def stage_cuda_tests(check: Check) -> dict:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_cuda*.py"))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "-rs", *files]
    started = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=max(30.0, min(check.args.tests_timeout_s, check.left_s())))
        output, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output, rc = output + "\n[timed out]", "timeout"
    (check.out / "cuda_tests.log").write_text(output)
    summary = next((line for line in reversed(output.splitlines()) if line.strip()), "")
    result = {"files": files, "exit": rc, "summary": summary, "seconds": round(time.monotonic() - started, 1)}
    if rc != 0:
        raise StageError(f"pytest exit {rc}: {summary} (see cuda_tests.log)")
    return result


def _clips(check: Check) -> list:
    from bench_engine import speechlike

    return [speechlike(s, seed=10 + i) for i, s in enumerate(check.args.clip_seconds)]


def stage_bf16_vs_fp32(check: Check) -> dict:
    import torch

    clips = _clips(check)
    tokens = {}
    for dtype in ("float32", "bfloat16"):
        model, tokenizer = check.model(dtype)
        with torch.inference_mode():
            tokens[dtype] = greedy_tokens(model, tokenizer, clips, max_new_tokens=check.args.max_tokens)
        if dtype == "float32":
            del check.models[dtype]  # keep the device's memory for the stages after
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    rows = []
    for seconds, a, b in zip(check.args.clip_seconds, tokens["float32"], tokens["bfloat16"]):
        common = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        rows.append({"seconds": seconds, "fp32_tokens": len(a), "bf16_tokens": len(b), "common_prefix": common,
                     "identical": a == b})
    return {"clips": rows, "identical": sum(r["identical"] for r in rows), "of": len(rows),
            "mean_common_prefix_fraction": round(sum(r["common_prefix"] / max(r["fp32_tokens"], 1)
                                                     for r in rows) / len(rows), 3)}


def _utterances(runner, tokenizer, n: int, seconds: float, seed: int = 0):
    from bench_engine import speechlike
    from qwen3_asr_stream.engine.utterance import Utterance, UtteranceSpec
    from qwen3_asr_stream.text.prompts import asr_prompt_ids

    d = runner.model.dims.audio
    spec = UtteranceSpec(*asr_prompt_ids(tokenizer))
    utts = [Utterance(i, spec, d.window_frames, d.window_tokens, d.num_mel_bins) for i in range(n)]
    audio = [speechlike(seconds, seed=seed + i) for i in range(n)]
    return utts, audio


def _runner(model, tokenizer, rows: int, static: bool | None, policy, max_utterance_s: float = MAX_UTTERANCE_S):
    """A model runner for batches of ``rows`` whose updates decode a fixed number of tokens."""
    from qwen3_asr_stream.engine.options import EngineOptions
    from qwen3_asr_stream.engine.runner import ModelRunner

    options = EngineOptions(max_batch=rows, max_utterance_s=max_utterance_s, policy=policy)
    runner = ModelRunner(model, policy, (-1,), options=options, static_decode=static)  # (-1,): a fixed token count
    runner.warm_up()
    return runner


def stage_graphs_vs_eager(check: Check) -> dict:
    import copy

    from qwen3_asr_stream.engine.options import PolicyOptions

    model, tokenizer = check.model(check.args.dtype)
    rows, seconds = check.args.graph_rows, check.args.graph_seconds
    policy = PolicyOptions(max_tokens_final=check.args.max_tokens, repetition_limit=0, draft=False)
    results, calls = {}, {}
    for name, static in (("eager", False), ("graphs", True)):
        runner = _runner(model, tokenizer, rows, static, policy)
        utts, audio = _utterances(runner, tokenizer, rows, seconds)
        for u, a in zip(utts, audio):
            u.append(a)
        saved = [copy.deepcopy(u.hypothesis) for u in utts]

        def final(runner=runner, utts=utts, saved=saved, name=name):
            for u, h in zip(utts, saved):
                u.hypothesis = copy.deepcopy(h)
            results[name] = [r.tokens for r in runner.update([(u, True) for u in utts])]

        calls[name] = (final, runner)
    eager_s, graphs_s = paired_medians(calls["eager"][0], calls["graphs"][0], check.args.repeats)
    graphs = calls["graphs"][1].graphs
    same = sum(a == b for a, b in zip(results["eager"], results["graphs"]))
    first2 = sum(a[:2] == b[:2] for a, b in zip(results["eager"], results["graphs"]))
    return {"rows": rows, "seconds": seconds, "tokens_per_row": check.args.max_tokens,
            "eager_ms": round(eager_s * 1e3, 2), "graphs_ms": round(graphs_s * 1e3, 2),
            "speedup": round(eager_s / graphs_s, 3), "identical_rows": same, "first_two_tokens_equal": first2,
            "cuda_graphs": bool(graphs is not None and graphs.use_graphs),
            "captures": graphs.captures if graphs is not None else 0,
            "eager_batches_in_graph_runner": graphs.eager_batches if graphs is not None else 0}


def _serve_options(check: Check):
    """The engine options ``serve`` uses by default (30 s utterances, an interim per second)."""
    from qwen3_asr_stream.server.loading import engine_options
    from qwen3_asr_stream.server.options import ServerOptions

    options = engine_options(ServerOptions())
    return dataclasses.replace(options, policy=dataclasses.replace(options.policy,
                                                                   update_interval_s=check.args.interval))


def _engine(check: Check, streams: int):
    """An engine with serve's options, room for ``streams``, and speech-like token bounds: random
    weights never say end-of-text, so an interim decodes at most ``--update-tokens`` new tokens
    and a final ``FINAL_TOKENS_PER_S`` per second of audio (what real speech gives)."""
    from qwen3_asr_stream.engine.text_layer import StreamingEngine

    model, tokenizer = check.model(check.args.dtype)
    serve = _serve_options(check)
    policy = dataclasses.replace(serve.policy, max_tokens_per_update=check.args.update_tokens,
                                 max_tokens_final=math.ceil(check.args.seconds * FINAL_TOKENS_PER_S) + 4)
    options = dataclasses.replace(serve, max_batch=check.args.max_batch, max_utterances=max(streams, 1),
                                  kv_budget_bytes=1 << 50, policy=policy)
    return StreamingEngine(model, tokenizer, options)


def stage_latency(check: Check) -> dict:
    from bench_engine import run_load_once

    with _engine(check, 1) as engine:
        run_load_once(engine, 1, min(check.args.seconds, 3.0), timeout_s=60)  # warm-up
        stats = run_load_once(engine, 1, check.args.seconds, timeout_s=60)
    if stats["finals"] != 1:
        raise StageError(f"the final did not come within 60 s: {stats}")
    return {"seconds": check.args.seconds, "update_interval_s": check.args.interval,
            **{k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}}


def stage_speakers(check: Check) -> dict:
    import numpy as np
    import torch

    from qwen3_asr_stream.engine.speakers import SpeakerModelOptions, load_speaker_model
    from qwen3_asr_stream.testing.speaker_checkpoints import write_wespeaker

    folder = write_wespeaker(Path(tempfile.mkdtemp(prefix="wespeaker-")))
    rng = np.random.default_rng(0)
    rows = []
    threads = torch.get_num_threads()  # the speaker model sets its own (1) on the calling thread
    try:
        for device in dict.fromkeys([check.args.device, "cpu"]):
            encoder = load_speaker_model(SpeakerModelOptions(f"wespeaker-resnet34:{folder}", device=device))
            batches = (1, 23) if device == "cpu" or check.args.quick else (1, 23, 256)
            for windows in batches:
                audio = (0.1 * rng.standard_normal((windows - 1) * encoder.hop + encoder.width)).astype(np.float32)
                features, _ = encoder.features(audio)
                encoder.embed(features)  # warm-up (cuDNN's algorithm choice, allocations)
                embed_s, features_s = paired_medians(lambda: encoder.embed(features), lambda: encoder.features(audio),
                                                     check.args.repeats)
                per_window_s = (embed_s + features_s) / windows
                rows.append({"device": device, "windows": windows, "embed_ms": round(1e3 * embed_s, 2),
                             "features_ms": round(1e3 * features_s, 2), "ms_per_window": round(1e3 * per_window_s, 2),
                             "streams_kept_up_with": int(0.4 / per_window_s)})
            del encoder
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(folder, ignore_errors=True)
    return {"model": "wespeaker-resnet34 (random weights)", "cpu_threads": 1, "rows": rows}


def _drain(engine, timeout_s: float = 60.0) -> None:
    """After an overloaded probe: wait for the engine's work to end, cancelling what remains, so
    the next probe starts on an idle engine."""
    if not engine.core.wait_idle(timeout_s):
        for uid in list(engine.core._entries):
            engine.cancel(uid)
        engine.core.wait_idle(timeout_s)


def stage_capacity(check: Check) -> dict:
    import torch

    from bench_engine import run_load_once

    args = check.args
    cuda = torch.cuda.is_available() and args.device.startswith("cuda")
    model, tokenizer = check.model(args.dtype)
    upper = args.max_streams
    from qwen3_asr_stream.engine.text_layer import memory_needed

    engine = _engine(check, upper)
    memory = memory_needed(model, tokenizer, engine.options)
    served = memory_needed(model, tokenizer, _serve_options(check))  # what serve reserves per utterance
    if cuda:  # no more streams than the cache memory the device has left for
        free, _ = torch.cuda.mem_get_info()
        fits = int((0.85 * free - memory.graph_bytes) // memory.utterance_bytes)
        upper = max(1, min(upper, fits))
    probes, peak_per_stream = [], {}
    with engine:
        run_load_once(engine, 1, min(args.seconds, 3.0), timeout_s=60)  # warm-up
        base = torch.cuda.memory_allocated() if cuda else 0

        def holds(n: int) -> bool:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            stats = run_load_once(engine, n, args.seconds, timeout_s=max(30.0, 4 * args.seconds))
            _drain(engine)
            ok = stats["finals"] == n and stats["update_p95_ms"] < args.p95_ms
            if cuda:
                peak_per_stream[n] = (torch.cuda.max_memory_allocated() - base) / n
            probes.append({**{k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}, "holds": ok})
            print(f"capacity probe: {n} streams, p95 update {stats['update_p95_ms']:.0f} ms, finals "
                  f"{stats['finals']}/{n}: {'holds' if ok else 'too many'}", flush=True)
            return ok

        probe_s = args.seconds + 2.0 + args.reserve_s  # a probe, and the profile stage after the search
        lo, hi, n, complete = 0, None, 1, True
        while hi is None and lo < upper:  # doubling
            if check.left_s() < probe_s:
                complete = False
                break
            if holds(n):
                lo, n = n, min(2 * n, upper)
            else:
                hi = n
        while complete and hi is not None and hi - lo > max(1, lo // 8):  # bisection
            if check.left_s() < probe_s:
                complete = False
                break
            mid = (lo + hi) // 2
            if holds(mid):
                lo = mid
            else:
                hi = mid
    check.capacity = lo
    result = {"p95_limit_ms": args.p95_ms, "update_interval_s": args.interval, "seconds_per_stream": args.seconds,
              "capacity": lo, "first_failing": hi, "search_bound": upper, "search_complete": complete,
              "cache_reserved_mib_per_utterance_serve": round(served.utterance_bytes / 2**20, 1),
              "cache_reserved_mib_per_utterance_here": round(memory.utterance_bytes / 2**20, 1),
              "graph_staging_mib": round(memory.graph_bytes / 2**20, 1), "probes": probes}
    if lo in peak_per_stream:
        result["measured_peak_mib_per_stream"] = round(peak_per_stream[lo] / 2**20, 1)
    return result


def _profile_one(check: Check, streams: int) -> tuple[dict, str]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from qwen3_asr_stream.engine.options import PolicyOptions

    model, tokenizer = check.model(check.args.dtype)
    # The load stages' token bounds; caches sized for the profiled audio (the staging cache of the
    # fixed-shape steps holds every row: at hundreds of rows, 30 s caches would not fit).
    policy = PolicyOptions(update_interval_s=check.args.interval, max_tokens_per_update=check.args.update_tokens,
                           max_tokens_final=64)
    seconds = check.args.profile_seconds + check.args.interval + 1.0
    runner = _runner(model, tokenizer, streams, None, policy, max_utterance_s=seconds)
    interval = int(check.args.interval * 16000)
    utts, audio = _utterances(runner, tokenizer, streams, check.args.profile_seconds + check.args.interval)
    fed = 0
    while fed + interval <= check.args.profile_seconds * 16000:  # interims every interval, batched
        for u, a in zip(utts, audio):
            u.append(a[fed : fed + interval])
        fed += interval
        runner.update([(u, False) for u in utts])
    for u, a in zip(utts, audio):
        u.append(a[fed : fed + interval])
    cuda = torch.cuda.is_available() and check.args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    started = time.perf_counter()
    with profile(activities=activities) as prof:
        results = runner.update([(u, False) for u in utts])
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - started
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    total = sum(getattr(e, key) for e in averages) or 1.0
    top = sorted(averages, key=lambda e: getattr(e, key), reverse=True)[:15]
    table = averages.table(sort_by=key, row_limit=25)
    summary = {"streams": streams, "audio_s": fed / 16000 + check.args.interval, "profiled_update_ms": round(wall * 1e3, 1),
               "decode_steps": max(r.decode_steps for r in results), "sorted_by": key,
               "top_ops": [{"op": e.key, "self_ms": round(getattr(e, key) / 1e3, 3),
                            "share": round(getattr(e, key) / total, 3), "calls": e.count} for e in top]}
    return summary, f"== one batched interim update, {streams} streams ({key}) ==\n{table}\n"


def stage_profile(check: Check) -> dict:
    levels = [check.args.profile_streams]
    if check.capacity and check.capacity not in levels:
        levels.append(check.capacity)
    out, texts = {}, []
    for n in levels:
        summary, text = _profile_one(check, n)
        out[str(n)] = summary
        texts.append(text)
        (check.out / "profiles.txt").write_text("\n".join(texts))
    if not check.capacity:
        out["note"] = "no capacity was found (capacity stage failed or held no stream): profiled the fixed level only"
    return out


# -- the run ----------------------------------------------------------------------------------------


def brief(name: str, result: dict) -> str:
    """A stage's key figures in one cell."""
    r = result
    if name == "environment":
        return f"torch {r['torch']}, {r.get('gpu', 'no GPU')}"
    if name == "imports":
        return f"{r['modules_imported']} modules"
    if name == "checkpoint":
        return f"{r.get('preset', r['folder'])} {r.get('gib', '')} GiB".strip()
    if name == "cuda_tests":
        return r["summary"]
    if name == "bf16_vs_fp32":
        return f"{r['identical']}/{r['of']} identical, common prefix {r['mean_common_prefix_fraction']:.0%}"
    if name == "graphs_vs_eager":
        return (f"{r['rows']} rows: eager {r['eager_ms']} ms, graphs {r['graphs_ms']} ms ({r['speedup']}x), "
                f"{r['identical_rows']}/{r['rows']} identical")
    if name == "latency":
        return (f"first partial {r['first_partial_ms']} ms, update p95 {r['update_p95_ms']} ms, "
                f"final {r['final_p50_ms']} ms")
    if name == "speakers":
        return "; ".join(f"{row['device']} {row['windows']} windows {row['ms_per_window']} ms/window" for row in r["rows"])
    if name == "capacity":
        peak = r.get("measured_peak_mib_per_stream")
        return (f"{r['capacity']} streams (p95 < {r['p95_limit_ms']:g} ms), "
                f"{r['cache_reserved_mib_per_utterance_serve']} MiB cache/utterance (serve)" + (f", peak {peak} MiB/stream" if peak is not None else "")
                + ("" if r["search_complete"] else ", search cut by the time budget"))
    if name == "profile":
        parts = []
        for n, s in r.items():
            if isinstance(s, dict):
                parts.append(f"{n}: {s['profiled_update_ms']} ms, top {s['top_ops'][0]['op']}")
        return "; ".join(parts)
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on the CPU")
    parser.add_argument("--preset", default="asr-0.6b", help="random checkpoint preset (testing.checkpoints)")
    parser.add_argument("--model", help="a checkpoint folder instead of random weights")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "results" / "gpu-check"))
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--quick", action="store_true", help="every stage scaled down (the CPU dry run)")
    parser.add_argument("--budget-s", type=float, default=None, help="stop starting capacity probes after this")
    parser.add_argument("--p95-ms", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=1.0, help="interim cadence, s (serve's default)")
    parser.add_argument("--max-streams", type=int, default=None, help="capacity search bound")
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="audio per stream in load probes")
    parser.add_argument("--update-tokens", type=int, default=10, help="new tokens per interim at most (load)")
    parser.add_argument("--profile-streams", type=int, default=None)
    args = parser.parse_args(argv)
    quick = args.quick
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    args.budget_s = args.budget_s or (60.0 if quick else 420.0)
    args.max_streams = args.max_streams or (4 if quick else 512)
    args.max_batch = args.max_batch or (4 if quick else 64)
    args.seconds = args.seconds or (2.0 if quick else 8.0)
    args.profile_streams = args.profile_streams or (2 if quick else 32)
    args.profile_seconds = 2.0 if quick else 6.0
    args.clip_seconds = [1.5, 3.0] if quick else [3.0, 7.0, 12.0, 20.0]
    args.max_tokens = 8 if quick else 48
    args.graph_rows, args.graph_seconds = (2, 2.0) if quick else (16, 10.0)
    args.repeats = 1 if quick else 3
    args.tests_timeout_s = 300.0
    args.reserve_s = 5.0 if quick else 75.0
    chosen = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; stages: {', '.join(STAGES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check = Check(args, out)
    check.record = {"options": {k: v for k, v in vars(args).items()}, "stages": {}}
    rows = []
    for name in [s for s in STAGES if s in chosen]:
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        try:
            result = globals()[f"stage_{name}"](check)
            entry = {"status": "ok", "result": result}
            cell = brief(name, result)
        except Exception as exc:  # noqa: BLE001 - a failed stage is reported; the others still run
            traceback.print_exc()
            message = f"{type(exc).__name__}: {exc}"
            entry = {"status": "FAILED", "error": message, "traceback": traceback.format_exc()[-4000:]}
            cell = message[:300]
        gc.collect()  # the stage's engines and runners, and their device memory
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
            sys.modules["torch"].cuda.empty_cache()
        entry["seconds"] = round(time.monotonic() - started, 1)
        check.record["stages"][name] = entry
        check.save()
        rows.append([name, entry["status"], entry["seconds"], cell])
        print(f"{name}: {entry['status']} in {entry['seconds']} s: {cell}", flush=True)
    if check.folder is not None and not args.model:
        shutil.rmtree(check.folder, ignore_errors=True)  # the random checkpoint (1.5 GB at full size)
    check.record["total_s"] = round(time.monotonic() - check.started, 1)
    check.save()
    title = (f"GPU check ({args.device}, {args.dtype}, {args.model or args.preset}"
             f"{', quick' if quick else ''}; total {check.record['total_s']} s)")
    print_table(title, ["stage", "status", "s", "result"], rows)
    lines = [title, ""] + [f"{r[0]:16} {r[1]:7} {r[2]:7} {r[3]}" for r in rows]
    (out / "gpu_check.txt").write_text("\n".join(lines) + "\n")
    print(f"\nwrote {out / 'gpu_check.json'}")
    return 0 if all(r[1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
