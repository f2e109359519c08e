"""Word timestamps for every stream from one forced aligner on one thread.

Requests from all streams wait in one queue; the thread takes everything waiting
(up to ``max_batch`` requests and ``max_batch_seconds`` of audio) and aligns it in
one batched pass, so streams whose utterances end together share a pass. Each
request gets a ``concurrent.futures.Future``; asyncio callers await it with
``asyncio.wrap_future``. A request cancelled before its batch starts is skipped.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Callable

from ..engine.aligner import MAX_ALIGN_SECONDS, AlignRequest, ForcedAligner
from ..text.alignment import WordTime
from ..audio import SAMPLE_RATE
from ..engine.worker import RequestQueue

log = logging.getLogger(__name__)
DEFAULT_ALIGNER_BATCH = 16  # utterances aligned in one pass

Batch = list[tuple[AlignRequest, Future]]


class AlignerWorker(RequestQueue[AlignRequest]):
    def __init__(self, aligner: ForcedAligner, *, max_batch: int = DEFAULT_ALIGNER_BATCH, max_batch_seconds: float = 240.0,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or max_batch_seconds <= 0:
            raise ValueError("max_batch must be at least 1 and max_batch_seconds positive")
        super().__init__("asr-aligner", "aligner worker")
        self.aligner = aligner
        self.max_batch = max_batch
        self.max_batch_samples = int(max_batch_seconds * SAMPLE_RATE)
        self._on_batch = on_batch  # (requests, seconds) after each pass, for metrics
        self.batches = 0
        self.aligned = 0

    def submit(self, request: AlignRequest) -> Future:
        """Queue one utterance; the future's result is its words (times in s from its audio start)."""
        duration = len(request.audio) / SAMPLE_RATE
        if duration > MAX_ALIGN_SECONDS:
            raise ValueError(f"the aligner takes at most {MAX_ALIGN_SECONDS:.0f} s of audio, got {duration:.1f} s")
        return self._submit(request)

    def _take(self) -> Batch | None:
        """What waits, up to the batch limits (called with the lock held); None when nothing does."""
        batch, samples = [], 0
        while self._queue and len(batch) < self.max_batch:
            request, future = self._queue[0]
            if batch and samples + len(request.audio) > self.max_batch_samples:
                break
            self._queue.popleft()
            if future.set_running_or_notify_cancel():  # False: cancelled while queued
                batch.append((request, future))
                samples += len(request.audio)
        return batch or None

    def _run(self, batch: Batch) -> None:
        started = time.perf_counter()
        try:
            results: list[list[WordTime]] = self.aligner.align([request for request, _ in batch])
        except Exception:  # noqa: BLE001 - one bad request must not fail the others
            self._align_one_by_one(batch)
            return
        elapsed = time.perf_counter() - started
        self.batches += 1
        self.aligned += len(batch)
        for (_, future), words in zip(batch, results):
            future.set_result(words)
        if self._on_batch is not None:
            self._on_batch(len(batch), elapsed)

    def _align_one_by_one(self, batch: Batch) -> None:
        """After a failed batch: each request alone, so only the bad one fails."""
        for request, future in batch:
            try:
                future.set_result(self.aligner.align([request])[0])
            except Exception as exc:  # noqa: BLE001
                log.warning("forced alignment failed (%s: %s)", type(exc).__name__, exc)
                future.set_exception(exc)
