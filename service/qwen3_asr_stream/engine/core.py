"""The token-level engine: many utterances, one model, one worker thread.

Scheduling policy: finals go before interims, each kind oldest request first; an
utterance has at most one pending request, so an interim that a newer one (or a
final) supersedes is never computed, and an utterance that sends audio faster than
real time still takes one row of a batch at a time (its next request queues behind
the others' older ones).

Window boundaries: the encoder attends within 8 s windows, so an update encodes and
prefills the open window again, and the update after a window completes would also
commit that window (encode it once more and append it to the cache): the most
expensive update of the cycle. Two rules keep updates even (``even_updates``): an
interim due just before a window completes (within ``WINDOW_HOLD_S``) waits for it
and then covers the audio through that window only (no open window: it costs what
an update of a full open window costs, and the window is not encoded twice); and a
window that completes between updates is committed when nothing else is due (a
COMMIT request, no result; an update commits it if it comes first). A held interim
whose window does not complete because no more audio comes (a client that sent
exactly 8.0 s and pauses) is computed from the audio there is once no audio has
arrived for ``held_wait_s`` (twice the last gap between pushes, 0.25-1 s).

Open utterances are bounded by count and by the decoder cache budget of the
:class:`KVLedger` (``EngineFull`` when either is reached). Callers on an asyncio loop
only take short locks here: all model work runs on the worker thread, and results go
back through each utterance's callback (called on that thread).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..audio.frontend import SAMPLE_RATE
from ..model.qwen3_asr import SpeechModel
from .worker import BatchWorker
from .kv_ledger import KVBudgetExceeded, KVLedger, kv_bytes_per_token, utterance_slots
from .options import EngineOptions
from .policy import WholeCharacters
from .runner import ModelRunner
from .utterance import Request, TokenResult, Utterance, UtteranceSpec

log = logging.getLogger(__name__)

TokenCallback = Callable[[TokenResult], None]

# An interim due less than this before a window completes waits for it (at most half an interval).
WINDOW_HOLD_S = 0.25
HELD_WAIT_MAX_S = 1.0  # the longest a held interim waits for audio that does not come


def held_wait_s(gap_s: float) -> float:
    """How long a held interim waits for the next audio: twice the last gap between pushes
    (a pause, not the client's usual chunk time), 0.25-1 s."""
    return min(max(WINDOW_HOLD_S, 2 * gap_s), HELD_WAIT_MAX_S)


class EngineFull(RuntimeError):
    """No capacity for another utterance right now."""


class EngineClosed(RuntimeError):
    """The engine has stopped."""


class UnknownUtterance(KeyError):
    pass


@dataclass
class _Entry:
    utterance: Utterance
    callback: TokenCallback
    requested_at: float = 0.0
    urgent: bool = False  # an early end of turn's interim: scheduled with the finals


@dataclass(frozen=True)
class EngineStats:
    open_utterances: int
    pending_finals: int
    pending_interims: int
    kv_reserved_bytes: int  # utterance caches admitted plus the fixed-shape staging cache
    kv_allocated_bytes: int  # of those, allocated now (measured from the tensors)
    kv_budget_bytes: int
    graph_captures: int  # fixed-shape decode steps prepared (all at start)
    updates: int
    batches: int
    commits: int  # window commits run between updates (COMMIT requests)
    commit_s: float  # their compute time, seconds


class EngineCore:
    def __init__(self, model: SpeechModel, options: EngineOptions, end_ids: tuple[int, ...],
                 whole: WholeCharacters) -> None:
        self.options = options
        self.model = model
        self.runner = ModelRunner(model, options.policy, end_ids, whole, options, options.static_decode,
                                  allocate=self._allocate)
        element = model.thinker.model.embed_tokens.weight.element_size()
        graphs = self.runner.graphs
        self.ledger = KVLedger(options.kv_budget_bytes, kv_bytes_per_token(model.dims, element),
                           graphs.nbytes if graphs is not None else 0)
        self._max_samples = int(options.max_utterance_s * SAMPLE_RATE)
        self._ids = itertools.count(1)
        self._entries: dict[int, _Entry] = {}
        self.worker: BatchWorker[list[tuple[_Entry, Request]]] = BatchWorker("asr-engine", self._take_batch,
                                                                          self._run_batch, self._next_held)
        self._cond = self.worker.cond
        self._warm = False
        self._updates = 0
        self._batches = 0
        self._commits = 0
        self._commit_s = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if not self._warm:
            self.runner.warm_up()  # CUDA graphs: every bucket, once, before any utterance
            self._warm = True
        self.worker.start()

    def close(self, timeout: float | None = 10.0) -> None:
        self.worker.close(timeout)

    # -- utterances (any thread) ---------------------------------------------------------------

    def open(self, spec: UtteranceSpec, callback: TokenCallback) -> int:
        """Admit a new utterance; raises :class:`EngineFull` when there is no room."""
        slots = utterance_slots(self.model.dims, self.options, len(spec.head_ids) + len(spec.tail_ids))
        with self._cond:
            if not self.worker.running:
                raise EngineClosed("the recognition engine is not running")
            if len(self._entries) >= self.options.max_utterances:
                raise EngineFull(
                    f"the engine already decodes {len(self._entries)} utterances (limit {self.options.max_utterances})"
                )
            dims = self.model.dims.audio
            uid = next(self._ids)
            try:
                self.ledger.reserve(uid, slots)
            except KVBudgetExceeded as exc:
                raise EngineFull(str(exc)) from None
            utterance = Utterance(uid, spec, dims.window_frames, dims.window_tokens, dims.num_mel_bins,
                                  capacity=slots)
            self._entries[uid] = _Entry(utterance, callback)
            return uid

    def push(self, utterance_id: int, samples: np.ndarray) -> None:
        """Append 16 kHz mono float32 audio; asks for an interim when the cadence is due."""
        entry = self._entry(utterance_id)
        u = entry.utterance
        samples = np.asarray(samples, dtype=np.float32)
        if u.samples + samples.shape[0] > self._max_samples:
            raise ValueError(f"an utterance holds at most {self.options.max_utterance_s} s of audio "
                             "(the engine's max_utterance_s)")
        length = u.append(samples)
        interval = int((u.spec.update_interval_s or self.options.policy.update_interval_s) * SAMPLE_RATE)
        features = u.features  # only its pure window arithmetic is used here
        completed = features.completed_count(length)
        even = self.options.even_updates
        hold = min(int(WINDOW_HOLD_S * SAMPLE_RATE), interval // 2) if even else -1
        window_soon = features.completion_samples(completed) - length <= hold
        cadence = u.spec.interim_results and length - u.last_update_samples >= interval
        due = cadence and not window_soon
        new_window = even and completed > features.completed_count(length - samples.shape[0])
        now = time.monotonic()
        with self._cond:
            gap, u.last_push_at = now - u.last_push_at if u.last_push_at else 0.0, now
            u.held_until = now + held_wait_s(gap) if cadence and window_soon else 0.0
            if u.held_until:
                self._cond.notify()  # the worker wakes to compute it if no more audio comes
            wanted = Request.INTERIM if due else Request.COMMIT if new_window else Request.NONE
            if due:
                # A window completed a moment ago (after the last update): cover the audio through it.
                boundary = features.completion_samples(completed - 1) if completed else 0
                recent = boundary > u.last_update_samples and length - boundary <= hold
                u.interim_end = boundary if recent else length
                u.last_update_samples = u.interim_end
            if wanted > u.request:
                u.request = wanted
                entry.requested_at = time.monotonic()
                self._cond.notify()

    def request_interim(self, utterance_id: int) -> None:
        """An interim over all the audio so far, now (not at the cadence): an early end of turn's
        speculative transcript (decoded from the last hypothesis as a draft, as interims are)."""
        entry = self._entry(utterance_id)
        u = entry.utterance
        with self._cond:
            u.interim_end = u.last_update_samples = u.samples
            entry.urgent = True
            if Request.INTERIM > u.request:
                u.request = Request.INTERIM
                entry.requested_at = time.monotonic()
            self._cond.notify()

    def finish(self, utterance_id: int) -> None:
        """No more audio: the final result comes through the callback."""
        entry = self._entry(utterance_id)
        with self._cond:
            entry.utterance.held_until = 0.0
            entry.utterance.request = Request.FINAL
            entry.requested_at = time.monotonic()
            self._cond.notify()

    def cancel(self, utterance_id: int) -> None:
        """Forget an utterance; no more results are sent for it."""
        with self._cond:
            entry = self._entries.pop(utterance_id, None)
            self.ledger.release(utterance_id)
            if entry is not None:
                entry.utterance.closed = True

    def stats(self) -> EngineStats:
        with self._cond:
            entries = list(self._entries.values())
            graphs = self.runner.graphs
            allocated = self.ledger.fixed_bytes + sum(
                e.utterance.cache.nbytes for e in entries if e.utterance.cache is not None)
            return EngineStats(
                open_utterances=len(entries),
                pending_finals=sum(e.utterance.request == Request.FINAL for e in entries),
                pending_interims=sum(e.utterance.request == Request.INTERIM for e in entries),
                kv_reserved_bytes=self.ledger.reserved_bytes,
                kv_allocated_bytes=allocated,
                kv_budget_bytes=self.ledger.budget_bytes,
                graph_captures=graphs.captures if graphs is not None else 0,
                updates=self._updates,
                batches=self._batches,
                commits=self._commits,
                commit_s=self._commit_s,
            )

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request is pending and no batch runs (benchmarks and tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self.worker.busy and all(e.utterance.request == Request.NONE
                                                     for e in self._entries.values()), timeout)

    def _entry(self, utterance_id: int) -> _Entry:
        with self._cond:
            entry = self._entries.get(utterance_id)
        if entry is None:
            raise UnknownUtterance(utterance_id)
        return entry

    # -- the worker thread -----------------------------------------------------------------

    def _allocate(self, u: Utterance):
        return self.model.new_row_cache(u.capacity)

    def _next_held(self) -> float | None:
        """Seconds until the next held interim is due by time (None: no interim is held)."""
        held = [e.utterance.held_until for e in self._entries.values() if e.utterance.held_until]
        return max(0.0, min(held) - time.monotonic()) if held else None

    def _release_held(self) -> None:
        """Held interims whose audio stopped coming: computed from the audio there is."""
        now = time.monotonic()
        for entry in self._entries.values():
            u = entry.utterance
            if u.held_until and now >= u.held_until:
                u.held_until = 0.0
                if u.request < Request.INTERIM:
                    u.request, u.interim_end = Request.INTERIM, 0
                    u.last_update_samples = u.samples
                    entry.requested_at = now

    def _take_batch(self) -> list[tuple[_Entry, Request]] | None:
        """Finals and urgent interims (an early end of turn) first, then interims, each oldest
        request first; commits only when neither is pending (a batch holds commits or updates,
        not both). Clears the requests taken."""
        self._release_held()
        pending = [e for e in self._entries.values() if e.utterance.request != Request.NONE]
        if not pending:
            return None
        if any(e.utterance.request > Request.COMMIT for e in pending):
            pending = [e for e in pending if e.utterance.request > Request.COMMIT]
        pending.sort(key=lambda e: (not (e.urgent or e.utterance.request == Request.FINAL),
                                    -int(e.utterance.request), e.requested_at))
        batch = []
        for entry in pending[: self.options.max_batch]:
            batch.append((entry, entry.utterance.request))
            entry.utterance.request = Request.NONE
            entry.urgent = False
        return batch

    def _run_batch(self, batch: list[tuple[_Entry, Request]]) -> None:
        if batch[0][1] == Request.COMMIT:
            self._run_commits([entry.utterance for entry, _ in batch])
            return
        batch = [(entry, request == Request.FINAL) for entry, request in batch]
        try:
            results = self.runner.update([(e.utterance, final) for e, final in batch])
        except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the engine
            log.exception("engine update failed; the utterances of this batch get an error result")
            results = [TokenResult(e.utterance.id, final, (), 0, e.utterance.samples,
                                   error=f"{type(exc).__name__}: {exc}") for e, final in batch]
        with self._cond:
            self._batches += 1
            self._updates += len(batch)
            for (entry, final), result in zip(batch, results):
                if final:
                    self._entries.pop(entry.utterance.id, None)
                    self.ledger.release(entry.utterance.id)
                    entry.utterance.cache = None
        for (entry, final), result in zip(batch, results):
            if entry.utterance.closed:
                continue
            if final:
                entry.utterance.closed = True
            try:
                entry.callback(result)
            except Exception:  # noqa: BLE001
                log.exception("result callback of utterance %d failed", entry.utterance.id)

    def _run_commits(self, utterances: list[Utterance]) -> None:
        started = time.perf_counter()
        try:
            committed = self.runner.commit(utterances)
        except Exception:  # noqa: BLE001 - the next update of these utterances commits instead
            log.exception("committing completed windows failed; their next update commits them")
            return
        with self._cond:
            self._commits += committed
            self._commit_s += time.perf_counter() - started
