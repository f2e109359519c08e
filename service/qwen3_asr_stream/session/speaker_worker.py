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
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from ..engine.speakers import SpeakerEncoder, window_count
from ..engine.worker import RequestQueue

log = logging.getLogger(__name__)

EMBED_EVERY_WINDOWS = 2  # embed a stream's windows in batches of this many as they complete


@dataclass
class _Request:
    audio: np.ndarray
    first: int
    complete_only: bool


class SpeakerWorker(RequestQueue[_Request]):
    def __init__(self, encoder: SpeakerEncoder, max_windows: int = 256) -> None:
        super().__init__("asr-speakers", "speaker worker")
        self.encoder = encoder
        self.max_windows = max_windows
        self.batches = 0
        self.embedded = 0  # windows
        self.seconds_per_window: float | None = None  # measured, a moving average over batches

    @property
    def backlog_s(self) -> float:
        """About how long the windows waiting now take to embed (0 before the first batch is measured)."""
        return self.queued_windows * (self.seconds_per_window or 0.0)

    @property
    def queued_windows(self) -> int:
        """Windows waiting for the speaker model (a backlog that grows: it cannot keep up)."""
        with self._worker.cond:
            return sum(self._windows_of(request) for request, _ in self._queue)

    def _windows_of(self, request: _Request) -> int:
        return max(0, self.window_count(len(request.audio), request.complete_only) - request.first)

    def window_count(self, samples: int, complete_only: bool) -> int:
        return window_count(samples, self.encoder.hop, self.encoder.width, complete_only)

    def submit(self, audio: np.ndarray, first: int = 0, complete_only: bool = False) -> Future:
        """Windows of one utterance's 16 kHz audio from index ``first`` (``SpeakerEncoder.features``):
        a future of ``(embeddings, spans, compute seconds)``."""
        return self._submit(_Request(audio, first, complete_only))

    def _take(self) -> list[tuple[_Request, Future]] | None:
        batch, windows = [], 0
        while self._queue and windows < self.max_windows:
            request, future = self._queue.popleft()
            if future.set_running_or_notify_cancel():  # False: cancelled while queued
                batch.append((request, future))
                windows += self._windows_of(request)
        return batch or None

    def _run(self, batch: list[tuple[_Request, Future]]) -> None:
        started = time.perf_counter()
        try:
            parts = [self.encoder.features(r.audio, r.first, r.complete_only) for r, _ in batch]
            embeddings = self.encoder.embed(np.concatenate([features for features, _ in parts]))
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            log.warning("speaker model failed (%s: %s)", type(exc).__name__, exc)
            for _, future in batch:
                future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        self.batches += 1
        if len(embeddings):
            measured = seconds / len(embeddings)
            previous = self.seconds_per_window
            self.seconds_per_window = measured if previous is None else 0.8 * previous + 0.2 * measured
        at = 0
        for (_, future), (features, spans) in zip(batch, parts):
            n = len(features)
            self.embedded += n
            future.set_result((embeddings[at: at + n], spans, seconds * n / max(1, len(embeddings))))
            at += n
