"""The speaker model for every stream, on one thread of its own.

An utterance's windows are embedded as its audio arrives (the windows complete so far, every
``EMBED_EVERY_WINDOWS`` new ones), and the rest when it ends, while the engine decodes its
final; callers await the futures with ``asyncio.wrap_future``. Clustering (``diarization``)
stays on the event loop.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..engine.speakers import SpeakerEncoder, window_count

EMBED_EVERY_WINDOWS = 2  # embed a stream's windows in batches of this many as they complete


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

    def submit(self, audio: np.ndarray, first: int = 0, complete_only: bool = False) -> Future:
        """Windows of one utterance's 16 kHz audio from index ``first`` (``SpeakerEncoder.windows``):
        a future of ``(embeddings, spans, compute seconds)``."""
        if self._pool is None:
            raise RuntimeError("the speaker worker is not running")
        return self._pool.submit(self._run, audio, first, complete_only)

    def window_count(self, samples: int, complete_only: bool) -> int:
        return window_count(samples, self.encoder.hop, self.encoder.width, complete_only)

    def _run(self, audio: np.ndarray, first: int, complete_only: bool):
        started = time.perf_counter()
        embeddings, spans = self.encoder.windows(audio, first, complete_only)
        self.embedded += 1
        return embeddings, spans, time.perf_counter() - started
