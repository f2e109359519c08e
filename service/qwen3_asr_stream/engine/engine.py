"""The streaming engine: many utterances, one model, one worker thread.

Scheduling policy: finals go before interims; an utterance has at most one
pending request, so an interim that a newer one (or a final) supersedes is never
computed; open utterances are bounded by count and by a decoder-cache memory
budget (``EngineFull`` when either is reached). Callers on an asyncio loop only
take short locks here: all model work runs on the engine's own thread, and
results go back through each utterance's callback (called on that thread).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..frontend import SAMPLE_RATE
from ..model.qwen3_asr import SpeechModel
from ..tokenizer import TextTokenizer
from .options import EngineOptions, UtteranceOptions
from .runner import ModelRunner
from .utterance import Request, UpdateResult, Utterance

log = logging.getLogger(__name__)

ResultCallback = Callable[[UpdateResult], None]


class EngineFull(RuntimeError):
    """No capacity for another utterance right now."""


class EngineClosed(RuntimeError):
    """The engine has stopped."""


class UnknownUtterance(KeyError):
    pass


@dataclass
class _Entry:
    utterance: Utterance
    callback: ResultCallback
    requested_at: float = 0.0


@dataclass(frozen=True)
class EngineStats:
    open_utterances: int
    pending_finals: int
    pending_interims: int
    kv_reserved_bytes: int
    updates: int
    batches: int


class StreamingEngine:
    def __init__(self, model: SpeechModel, tokenizer: TextTokenizer, options: EngineOptions = EngineOptions()) -> None:
        self.options = options
        self.model = model
        self.runner = ModelRunner(model, tokenizer, options.policy)
        dims = model.dims
        text = dims.text
        element = model.thinker.model.embed_tokens.weight.element_size()
        self.kv_bytes_per_token = 2 * text.num_hidden_layers * text.num_key_value_heads * text.head_dim * element
        tokens = int(options.max_utterance_s * 1000 / 80) + 64 + options.policy.max_tokens_final
        self.kv_bytes_per_utterance = self.kv_bytes_per_token * tokens
        self._ids = itertools.count(1)
        self._entries: dict[int, _Entry] = {}
        self._cond = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self._updates = 0
        self._batches = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "StreamingEngine":
        with self._cond:
            if self._running:
                return self
            self._running = True
        self._thread = threading.Thread(target=self._loop, name="asr-engine", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> "StreamingEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- utterances (any thread) ---------------------------------------------------------------

    def open(self, options: UtteranceOptions, callback: ResultCallback) -> int:
        """Admit a new utterance; raises :class:`EngineFull` when there is no room."""
        with self._cond:
            if not self._running:
                raise EngineClosed("the recognition engine is not running")
            if len(self._entries) >= self.options.max_utterances:
                raise EngineFull(
                    f"the engine already decodes {len(self._entries)} utterances (limit {self.options.max_utterances})"
                )
            reserved = (len(self._entries) + 1) * self.kv_bytes_per_utterance
            if reserved > self.options.kv_budget_bytes:
                raise EngineFull(
                    f"decoder cache budget of {self.options.kv_budget_bytes >> 20} MiB is taken by "
                    f"{len(self._entries)} utterances"
                )
            dims = self.model.dims.audio
            utterance = Utterance(next(self._ids), options, dims.window_frames, dims.window_tokens, dims.num_mel_bins)
            self._entries[utterance.id] = _Entry(utterance, callback)
            return utterance.id

    def push(self, utterance_id: int, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 audio; asks for an interim when the cadence is due."""
        entry = self._entry(utterance_id)
        u = entry.utterance
        length = u.append(np.asarray(samples, dtype=np.float32))
        interval = int((u.options.update_interval_s or self.options.policy.update_interval_s) * SAMPLE_RATE)
        if u.options.interim_results and length - u.last_update_samples >= interval:
            with self._cond:
                u.last_update_samples = length
                if u.request < Request.INTERIM:
                    u.request = Request.INTERIM
                    entry.requested_at = time.monotonic()
                self._cond.notify()

    def finish(self, utterance_id: int) -> None:
        """No more audio: the final result comes through the callback."""
        entry = self._entry(utterance_id)
        with self._cond:
            entry.utterance.request = Request.FINAL
            entry.requested_at = time.monotonic()
            self._cond.notify()

    def cancel(self, utterance_id: int) -> None:
        """Forget an utterance; no more results are sent for it."""
        with self._cond:
            entry = self._entries.pop(utterance_id, None)
            if entry is not None:
                entry.utterance.closed = True

    def stats(self) -> EngineStats:
        with self._cond:
            entries = list(self._entries.values())
            return EngineStats(
                open_utterances=len(entries),
                pending_finals=sum(e.utterance.request == Request.FINAL for e in entries),
                pending_interims=sum(e.utterance.request == Request.INTERIM for e in entries),
                kv_reserved_bytes=len(entries) * self.kv_bytes_per_utterance,
                updates=self._updates,
                batches=self._batches,
            )

    def _entry(self, utterance_id: int) -> _Entry:
        with self._cond:
            entry = self._entries.get(utterance_id)
        if entry is None:
            raise UnknownUtterance(utterance_id)
        return entry

    # -- the worker thread -----------------------------------------------------------------

    def _take_batch(self) -> list[tuple[_Entry, bool]]:
        """Finals first (oldest first), then interims; clears the requests taken."""
        pending = [e for e in self._entries.values() if e.utterance.request != Request.NONE]
        pending.sort(key=lambda e: (-int(e.utterance.request), e.requested_at))
        batch = []
        for entry in pending[: self.options.max_batch]:
            batch.append((entry, entry.utterance.request == Request.FINAL))
            entry.utterance.request = Request.NONE
        return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._running and not any(e.utterance.request for e in self._entries.values()):
                    self._cond.wait()
                if not self._running:
                    return
                batch = self._take_batch()
            try:
                results = self.runner.update([(e.utterance, final) for e, final in batch])
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the engine
                log.exception("engine update failed; the utterances of this batch get an error result")
                results = [
                    UpdateResult(e.utterance.id, final, "", "", "", (), 0, e.utterance.samples,
                                 error=f"{type(exc).__name__}: {exc}")
                    for e, final in batch
                ]
            with self._cond:
                self._batches += 1
                self._updates += len(batch)
                for (entry, final), result in zip(batch, results):
                    if final:
                        self._entries.pop(entry.utterance.id, None)
            for (entry, final), result in zip(batch, results):
                if entry.utterance.closed:
                    continue
                if final:
                    entry.utterance.closed = True
                try:
                    entry.callback(result)
                except Exception:  # noqa: BLE001
                    log.exception("result callback of utterance %d failed", entry.utterance.id)
