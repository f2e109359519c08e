"""The GPU decode step: preallocated batch caches and one CUDA graph per shape bucket.

A batched update stacks the utterances' caches into a preallocated batch cache
of a bucketed shape (rows: the next power of two; slots: the next multiple of
``capacity_step``), prefills eagerly, then runs every one-token step with fixed
shapes (``TextDecoder.step_static``). On CUDA each bucket's step is captured once
as a CUDA graph and replayed; elsewhere (and when capture fails) the same
fixed-shape step runs eagerly, which the CPU tests compare with the dynamic path.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..model.kv_cache import KVCache
from ..model.qwen3_asr import SpeechModel

log = logging.getLogger(__name__)


@dataclass
class _Bucket:
    cache: KVCache
    tokens: torch.Tensor  # (rows, 1) long: the step's input
    slot: torch.Tensor  # (1,) long: the cache slot the step writes
    logits: torch.Tensor | None = None  # (rows, vocab): the step's output buffer
    graph: "torch.cuda.CUDAGraph | None" = None


class DecodeGraphs:
    def __init__(self, model: SpeechModel, capacity_step: int = 256, max_buckets: int = 4,
                 use_graphs: bool | None = None) -> None:
        self.model = model
        self.capacity_step = capacity_step
        self.max_buckets = max_buckets
        self.use_graphs = (model.device.type == "cuda") if use_graphs is None else use_graphs
        self._buckets: OrderedDict[tuple[int, int], _Bucket] = OrderedDict()

    def shape_for(self, rows: int, slots: int) -> tuple[int, int]:
        bucket_rows = 1
        while bucket_rows < rows:
            bucket_rows *= 2
        step = self.capacity_step
        return bucket_rows, -(-slots // step) * step

    def batch_cache(self, rows: int, slots: int) -> KVCache:
        """A preallocated batch cache with at least ``rows`` rows and ``slots`` slots."""
        key = self.shape_for(rows, slots)
        bucket = self._buckets.get(key)
        if bucket is None:
            while len(self._buckets) >= self.max_buckets:
                self._buckets.popitem(last=False)
            cache = self.model.new_cache(*key)
            device = self.model.device
            bucket = _Bucket(cache, torch.zeros(key[0], 1, dtype=torch.long, device=device),
                             torch.zeros(1, dtype=torch.long, device=device))
            self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        return bucket.cache

    def _run(self, bucket: _Bucket) -> torch.Tensor:
        model, cache = self.model, bucket.cache
        cache.static_slot = bucket.slot  # only while the fixed-shape step runs (or is captured)
        try:
            hidden = model.decoder.step_static(model.embed(bucket.tokens), cache)
            return model.thinker.lm_head(hidden[:, -1])
        finally:
            cache.static_slot = None

    def _capture(self, bucket: _Bucket) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        # Warm up on a side stream (allocations, kernel selection), then capture.
        slot = bucket.cache.cursor
        buffers = bucket.cache.keys + bucket.cache.values
        snapshot = [t[:, :, slot].clone() for t in buffers]
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._run(bucket)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            bucket.logits = self._run(bucket)
        # The warm-up and capture wrote into the cache at the current slot: restore it.
        for dst, src in zip(buffers, snapshot):
            dst[:, :, slot] = src
        bucket.graph = graph

    @torch.inference_mode()
    def step(self, cache: KVCache, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row of a cache from :meth:`batch_cache`; returns ``(rows, vocab)`` logits."""
        bucket = next(b for b in self._buckets.values() if b.cache is cache)
        assert cache.cursor < cache.capacity, "the batch cache is full"
        bucket.tokens[: tokens.shape[0], 0].copy_(tokens)
        bucket.slot.fill_(cache.cursor)
        if self.use_graphs and bucket.graph is None:
            try:
                self._capture(bucket)
            except Exception:  # noqa: BLE001 - fall back to the eager fixed-shape step
                log.exception("CUDA graph capture failed for a %s batch; decoding eagerly", tuple(cache.keys[0].shape))
                self.use_graphs = False
        if self.use_graphs and bucket.graph is not None:
            bucket.graph.replay()
            logits = bucket.logits
        else:
            logits = self._run(bucket)
        cache.valid[:, cache.cursor] = True
        cache.next_position += 1
        cache.cursor += 1
        return logits
