"""Loading what the server serves, the one way ``serve``, the tests and the benchmarks use.

    engine = load_engine("/models/Qwen3-ASR-0.6B", options, LoadOptions(device="cuda"))
    aligner = load_aligner("/models/Qwen3-ForcedAligner-0.6B", LoadOptions(device="cuda"))
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from ..checkpoint import LoadOptions, load_pretrained
from ..engine.aligner import ForcedAligner
from ..engine.options import EngineOptions, PolicyOptions
from ..engine.text_layer import StreamingEngine, memory_needed
from ..text.transcript import SUPPORTED_LANGUAGES
from .options import ServerOptions

GIB = 1 << 30
DEFAULT_MAX_BATCH = EngineOptions.max_batch  # utterances decoded together in one step (``serve --max-batch``)

log = logging.getLogger("qwen3_asr_stream.server")


def model_name(path_or_repo: str) -> str:
    """The name clients put in RecognitionConfig.model: the repo's or the folder's last part."""
    return Path(str(path_or_repo).rstrip("/")).name


def engine_options(options: ServerOptions, *, max_batch: int = DEFAULT_MAX_BATCH) -> EngineOptions:
    """Engine options that fit the server's: room for two utterances per stream (one
    finishing, one starting), utterances as long as the server's endpointing allows (a
    stream may ask for shorter ones, not longer), the server's default interim cadence
    (each stream sets its own). The cache budget is set by ``load_engine``."""
    return EngineOptions(
        max_batch=max_batch, max_utterances=2 * options.max_streams,
        max_utterance_s=options.endpointing.max_utterance_ms / 1000,
        policy=dataclasses.replace(PolicyOptions(), update_interval_s=options.update_interval_ms / 1000))


def load_engine(path: str, options: ServerOptions = ServerOptions(), load: LoadOptions = LoadOptions(), *,
                kv_cache_gib: float | None = None, **overrides: Any) -> StreamingEngine:
    """A started engine for the checkpoint at ``path`` sized for ``options``.

    ``overrides`` replace fields of the ``EngineOptions`` (``max_batch=8``, ``policy=...``).
    The decoder cache budget is exactly what ``max_utterances`` utterances need with the
    longest prompt a stream gets without context (any language forced; the KV ledger's
    arithmetic), unless ``kv_cache_gib`` or a ``kv_budget_bytes`` override sets it. A
    stream's context lengthens its prompt beyond that: such utterances may find the
    budget full (``EngineFull``) before ``max_utterances`` are open.
    """
    log.info("loading %s from %s on %s (%s%s)", model_name(path), path, load.device, load.dtype,
             ", int8 decoder" if load.quantize == "int8" else "")
    model, tokenizer = load_pretrained(path, load)
    engine_opts = dataclasses.replace(engine_options(options), **overrides)
    if "kv_budget_bytes" not in overrides:
        budget = (int(kv_cache_gib * GIB) if kv_cache_gib
                  else max((memory_needed(model, tokenizer, engine_opts, language=language)
                            for language in (None, *SUPPORTED_LANGUAGES)), key=lambda m: m.utterance_bytes)
                  .budget_for(engine_opts.max_utterances))
        engine_opts = dataclasses.replace(engine_opts, kv_budget_bytes=budget)
    return StreamingEngine(model, tokenizer, engine_opts).start()


def load_aligner(path: str, load: LoadOptions = LoadOptions()) -> ForcedAligner:
    """The forced aligner at ``path`` (word times of finals)."""
    log.info("loading aligner %s from %s", model_name(path), path)
    return ForcedAligner(*load_pretrained(path, load, "aligner"))
