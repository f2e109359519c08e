"""Helpers shared by the benchmarks: timing, tables, JSON results, checkpoints."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
for part in ("service", "client"):
    if str(ROOT / part) not in sys.path:
        sys.path.insert(0, str(ROOT / part))


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def paired_medians(first: Callable[[], object], second: Callable[[], object], repeats: int,
                   warmup: int = 1) -> tuple[float, float]:
    """Median times of two functions timed alternately (ABBA order), so machine noise and
    cache effects of running first hit both alike."""
    for _ in range(warmup):
        first()
        second()
    a, b = [], []
    for r in range(repeats):
        pairs = ((first, a), (second, b)) if r % 2 == 0 else ((second, b), (first, a))
        for fn, out in pairs:
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [[str(c) for c in header]] + [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_results(name: str, payload: dict, folder: Path | None = None) -> Path:
    """``payload`` with the machine's description as ``folder/name.json`` (default: benchmarks/results)."""
    import torch

    folder = folder or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        **payload,
    }
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(f"\nwrote {path}")
    return path


def greedy_tokens(model, tokenizer, audios, prefixes=None, language: str | None = None,
                  max_new_tokens: int = 512) -> list[list[int]]:
    """Offline greedy decoding of whole 16 kHz recordings, batched, as ``Transcriber`` does;
    ``prefixes`` (text per recording) continue the prompt as the official streaming policy's
    ``prompt_raw + prefix`` does. Returns the new tokens of each recording (no prefix)."""
    import torch

    from qwen3_asr_stream.engine.decoding import StopRules, greedy_generate
    from qwen3_asr_stream.audio.frontend import batch_features
    from qwen3_asr_stream.offline import padded_for_model
    from qwen3_asr_stream.text.prompts import asr_prompt_text

    waves = [torch.from_numpy(np.ascontiguousarray(padded_for_model(a), dtype=np.float32)) for a in audios]
    features, frames = batch_features(waves)
    encoded = model.encode_audio([features[i, :, :n] for i, n in enumerate(frames)])
    prefixes = prefixes or [""] * len(audios)
    prompts = [tokenizer.encode(asr_prompt_text(e.shape[0], "", language) + p) for e, p in zip(encoded, prefixes)]
    return greedy_generate(model, prompts, encoded, StopRules(tokenizer.end_of_text_ids(), max_new_tokens))


def checkpoint(preset: str, folder: str | None, dtype: str = "bfloat16") -> Path:
    """``folder`` if given, else a fresh random checkpoint of ``preset`` in a temporary folder."""
    if folder:
        return Path(folder)
    from qwen3_asr_stream.testing.checkpoints import PRESETS, write_checkpoint

    out = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-"))
    started = time.perf_counter()
    write_checkpoint(out, PRESETS[preset], seed=0, dtype=dtype)
    print(f"wrote random {preset} checkpoint to {out} in {time.perf_counter() - started:.1f} s")
    return out
