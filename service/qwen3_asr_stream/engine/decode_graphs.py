"""Fixed-shape decode steps: one staging batch cache, every bucket captured once at start.

The buckets are (rows, slots) pairs: rows a power of two up to ``max_batch``, slots
256, 512, ... up to the largest utterance cache (:func:`kv_ledger.graph_shapes`). All
buckets are views of one staging cache allocated at start; :meth:`capture_all` captures
each bucket's one-token step as a CUDA graph (on the CPU, and when capture fails, the
same fixed-shape step runs eagerly: :attr:`captures` counts the preparations either
way, so tests can check that nothing is prepared after start). A batch whose longest
row does not fit the largest bucket decodes eagerly on its own caches.

The staging copy: graphs hold fixed addresses, so before the steps of an update each
row's filled slots are copied into the staging rows (right-aligned); prefill and
draft verification run on the utterances' own caches, and nothing is copied back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from .decoding import DecodeRow, EagerStepper
from ..model.kv_cache import KVCache, stack_rows
from ..model.qwen3_asr import SpeechModel

log = logging.getLogger(__name__)


@dataclass
class _Bucket:
    cache: KVCache  # a view of the staging cache: (rows, slots)
    tokens: torch.Tensor  # (rows, 1) long: the step's input
    slot: torch.Tensor  # (1,) long: the cache slot the step writes
    logits: torch.Tensor | None = None  # (rows, vocab): the step's output buffer
    graph: "torch.cuda.CUDAGraph | None" = None


class DecodeGraphs:
    def __init__(self, model: SpeechModel, rows: list[int], lengths: list[int], pad_id: int,
                 use_graphs: bool | None = None) -> None:
        self.model = model
        self.pad_id = pad_id
        self.use_graphs = (model.device.type == "cuda") if use_graphs is None else use_graphs
        self.staging = model.new_cache(rows[-1], lengths[-1])
        device = model.device
        self._buckets = {
            (r, n): _Bucket(self.staging.view(r, n), torch.zeros(r, 1, dtype=torch.long, device=device),
                            torch.zeros(1, dtype=torch.long, device=device))
            for r in rows for n in lengths
        }
        self.captures = 0  # bucket preparations (CUDA graph captures, or eager warm-ups)
        self.eager_batches = 0  # batches too long for every bucket
        self._pool = None

    @property
    def nbytes(self) -> int:
        """Keys and values of the staging cache (measured from its tensors)."""
        return sum(t.untyped_storage().nbytes() for t in self.staging.keys + self.staging.values)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """The (rows, slots) of every bucket, smallest first."""
        return sorted(self._buckets)

    def bucket(self, rows: int, slots: int) -> _Bucket | None:
        """The smallest bucket that holds ``rows`` rows of ``slots`` slots; None when none does."""
        fits = [key for key in self._buckets if key[0] >= rows and key[1] >= slots]
        return self._buckets[min(fits)] if fits else None

    # -- preparation (at start only) -------------------------------------------------

    def _run(self, bucket: _Bucket) -> torch.Tensor:
        model, cache = self.model, bucket.cache
        cache.static_slot = bucket.slot  # only while the fixed-shape step runs (or is captured)
        try:
            hidden = model.decoder.step_static(model.embed(bucket.tokens), cache)
            return model.head(hidden[:, -1])
        finally:
            cache.static_slot = None

    def _capture(self, bucket: _Bucket) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up on a side stream (allocations, kernel selection)
            for _ in range(2):
                self._run(bucket)
        torch.cuda.current_stream().wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()  # one memory pool: graphs replay one at a time
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            bucket.logits = self._run(bucket)
        bucket.graph = graph

    @torch.inference_mode()
    def capture_all(self) -> None:
        """Prepare every bucket (the staging cache is scratch here: nothing lives in it yet)."""
        for bucket in self._buckets.values():
            if bucket.graph is not None or bucket.logits is not None:
                continue
            if self.use_graphs:
                try:
                    self._capture(bucket)
                except Exception:  # noqa: BLE001 - fall back to the eager fixed-shape step
                    log.exception("CUDA graph capture failed; decoding with eager fixed-shape steps")
                    self.use_graphs = False
            if not self.use_graphs:
                bucket.logits = self._run(bucket)  # the same step, run eagerly once
            self.captures += 1
        self.staging.reset()

    # -- one update's steps ---------------------------------------------------------------

    def stepper(self) -> "StaticStepper":
        return StaticStepper(self)

    def step(self, bucket: _Bucket, tokens: list[int]) -> torch.Tensor:
        cache = bucket.cache
        assert cache.cursor < cache.capacity, "the staging cache is full"
        bucket.tokens[: len(tokens), 0].copy_(torch.tensor(tokens, device=bucket.tokens.device))
        bucket.slot.fill_(cache.cursor)
        if bucket.graph is not None:
            bucket.graph.replay()
            logits = bucket.logits
        else:
            logits = self._run(bucket)
        cache.valid[:, cache.cursor] = True
        cache.next_position += 1
        cache.cursor += 1
        return logits


class StaticStepper:
    """Steps of one update on a staging bucket (every row runs; finished rows get a pad token)."""

    def __init__(self, graphs: DecodeGraphs) -> None:
        self.graphs = graphs
        self.bucket: _Bucket | None = None
        self.eager: EagerStepper | None = None

    def begin(self, rows: list[DecodeRow]) -> None:
        remaining = max(r.stop.max_tokens - len(r.tokens) for r in rows)
        slots = max(r.cache.length for r in rows) + remaining + 1
        self.bucket = self.graphs.bucket(len(rows), slots)
        if self.bucket is None:
            self.graphs.eager_batches += 1
            self.eager = EagerStepper(self.graphs.model)
            self.eager.begin(rows)
            return
        stack_rows([r.cache for r in rows], into=self.bucket.cache)

    def step(self, active: list[int], tokens: list[int]) -> torch.Tensor:
        if self.eager is not None:
            return self.eager.step(active, tokens)
        assert self.bucket is not None
        feed = [self.graphs.pad_id] * self.bucket.cache.batch
        for j, token in zip(active, tokens):
            feed[j] = token
        logits = self.graphs.step(self.bucket, feed)
        return logits[torch.tensor(active, device=logits.device)]
