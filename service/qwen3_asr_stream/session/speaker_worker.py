"""The speaker model for every stream, on one thread of its own.

Each final utterance's audio is submitted when the utterance ends, so its windows are
embedded while the engine decodes its final; callers await the future with
``asyncio.wrap_future``. Clustering (``diarization``) stays on the event loop.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..engine.speakers import SpeakerEncoder


class SpeakerWorker:
    def __init__(self, encoder: SpeakerEncoder) -> None:
        self.encoder = encoder
        self._pool: ThreadPoolExecutor | None = None
        self.embedded = 0

    def start(self) -> "SpeakerWorker":
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="asr-speakers")
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def submit(self, audio: np.ndarray) -> Future:
        """Windows of one utterance's 16 kHz audio: a future of ``(embeddings, spans, compute seconds)``."""
        if self._pool is None:
            raise RuntimeError("the speaker worker is not running")
        return self._pool.submit(self._run, audio)

    def _run(self, audio: np.ndarray):
        started = time.perf_counter()
        embeddings, spans = self.encoder.windows(audio)
        self.embedded += 1
        return embeddings, spans, time.perf_counter() - started
