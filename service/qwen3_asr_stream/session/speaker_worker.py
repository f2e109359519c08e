"""The speaker model for every stream, on one thread of its own, batched across streams.

An utterance's windows are embedded as its audio arrives (the windows complete so far, every
``EMBED_EVERY_WINDOWS`` new ones), and the rest when it ends, while the engine decodes its
final. Requests of all streams wait in one queue; the thread takes everything waiting (up to
``max_windows`` windows), computes each request's features and embeds all their windows in
one batched pass. Each request gets a ``concurrent.futures.Future``; callers await it with
``asyncio.wrap_future``. Clustering (``diarization``) stays on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ..engine.speakers import SpeakerEncoder, window_count
from ..engine.worker import BatchWorker

log = logging.getLogger(__name__)

EMBED_EVERY_WINDOWS = 2  # embed a stream's windows in batches of this many as they complete


@dataclass
class _Request:
    audio: np.ndarray
    first: int
    complete_only: bool
    future: Future


class SpeakerWorker:
    def __init__(self, encoder: SpeakerEncoder, max_windows: int = 256) -> None:
        self.encoder = encoder
        self.max_windows = max_windows
        self._queue: deque[_Request] = deque()
        self._worker: BatchWorker[list[_Request]] = BatchWorker("asr-speakers", take=self._take, run=self._run)
        self.batches = 0
        self.embedded = 0  # windows

    def start(self) -> "SpeakerWorker":
        self._worker.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the thread; requests still queued are cancelled."""
        with self._worker.cond:
            pending = list(self._queue)
            self._queue.clear()
        self._worker.close(timeout)
        for request in pending:
            request.future.cancel()

    def window_count(self, samples: int, complete_only: bool) -> int:
        return window_count(samples, self.encoder.hop, self.encoder.width, complete_only)

    def submit(self, audio: np.ndarray, first: int = 0, complete_only: bool = False) -> Future:
        """Windows of one utterance's 16 kHz audio from index ``first`` (``SpeakerEncoder.features``):
        a future of ``(embeddings, spans, compute seconds)``."""
        future: Future = Future()
        with self._worker.cond:
            if not self._worker.running:
                raise RuntimeError("the speaker worker is not running")
            self._queue.append(_Request(audio, first, complete_only, future))
            self._worker.cond.notify()
        return future

    def _take(self) -> list[_Request] | None:
        batch, windows = [], 0
        while self._queue and windows < self.max_windows:
            request = self._queue.popleft()
            if request.future.set_running_or_notify_cancel():
                batch.append(request)
                count = window_count(len(request.audio), self.encoder.hop, self.encoder.width, request.complete_only)
                windows += max(0, count - request.first)
        return batch or None

    def _run(self, batch: list[_Request]) -> None:
        started = time.perf_counter()
        try:
            parts = [self.encoder.features(r.audio, r.first, r.complete_only) for r in batch]
            embeddings = self.encoder.embed(np.concatenate([features for features, _ in parts]))
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            log.warning("speaker model failed (%s: %s)", type(exc).__name__, exc)
            for request in batch:
                request.future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        self.batches += 1
        at = 0
        for request, (features, spans) in zip(batch, parts):
            n = len(features)
            self.embedded += n
            request.future.set_result((embeddings[at: at + n], spans, seconds * n / max(1, len(embeddings))))
            at += n
