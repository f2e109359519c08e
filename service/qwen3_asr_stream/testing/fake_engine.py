"""A scripted stand-in for the streaming engine: ``StreamingEngine``'s interface, no model.

Session tests drive calls through it (nanochat's mock-model habit): audio in, scripted
text out, from a worker thread of its own, as the real engine's results come:

    engine = FakeEngine().start()
    uid = engine.open(UtteranceOptions(update_interval_s=0.5), callback)
    engine.push(uid, samples)        # an interim per update_interval_s of audio (when interim_results)
    engine.finish(uid)               # the final, exactly once
    engine.fail_updates("exploded")  # from now on every update gives an error result
    engine.wait_idle()               # nothing pending, no batch running

The contract it keeps with the real engine (``engine/core.py``, ``engine/text_layer.py``;
``tests/test_fake_engine.py`` runs one scenario on both and compares what comes out):

- ``open`` raises ``EngineFull`` at ``max_utterances`` open utterances, ``EngineClosed``
  when the engine is not running; ``push`` / ``finish`` of an utterance that is not
  open (cancelled, or its final delivered) raise ``UnknownUtterance``; audio beyond
  ``max_utterance_s`` raises ``ValueError``.
- An utterance has at most one pending request; a newer one supersedes it (a final an
  interim). Finals go before interims, each oldest first, ``max_batch`` per batch.
- Per utterance: interims in order, each covering the audio there was when it was due,
  then one final covering all of it; nothing after ``cancel`` or after the final.
- A failed update gives a result with ``error`` set and no text; a failed final ends
  the utterance as a final does.

What it leaves out: the even-update window holds and COMMIT requests (the cadence is the
plain one: an interim each ``update_interval_s`` of audio), memory accounting, and the
model's text. Its text: one word of ``words`` (cycled) per ``seconds_per_word`` of audio;
an interim's stable text is its text without the last word, as the real text layer's
stable text is a prefix that only grows; a final's stable text is empty, as the real
text layer's is.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..audio import SAMPLE_RATE
from ..engine.core import EngineClosed, EngineFull, UnknownUtterance
from ..engine.options import EngineOptions, UtteranceOptions
from ..engine.utterance import Request, UpdateResult
from ..engine.worker import BatchWorker

log = logging.getLogger(__name__)

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog")

ResultCallback = Callable[[UpdateResult], None]


@dataclass(frozen=True)
class FakeEngineStats:
    open_utterances: int
    pending_finals: int
    pending_interims: int
    updates: int  # results computed (interims and finals, errors included)
    batches: int


@dataclass(eq=False)
class _Utterance:
    id: int
    options: UtteranceOptions
    callback: ResultCallback
    samples: int = 0
    last_update_samples: int = 0
    interim_end: int = 0  # audio the pending interim covers
    request: Request = Request.NONE
    requested_at: float = 0.0
    closed: bool = False


class FakeEngine:
    """``StreamingEngine``'s interface (open / push / finish / cancel / stats / options / start /
    close / wait_idle) on a script instead of a model."""

    def __init__(self, options: EngineOptions = EngineOptions(), *, words: Sequence[str] = WORDS,
                 seconds_per_word: float = 0.4, update_delay_s: float = 0.0) -> None:
        if not words or seconds_per_word <= 0 or update_delay_s < 0:
            raise ValueError("a fake engine needs words, a positive seconds_per_word and update_delay_s >= 0")
        self.options = options
        self.words = tuple(words)
        self.seconds_per_word = seconds_per_word
        self.update_delay_s = update_delay_s  # compute time each batch takes (on the worker thread)
        self.opened: list[UtteranceOptions] = []  # what each open asked for, in order
        self._ids = itertools.count(1)
        self._open: dict[int, _Utterance] = {}
        self._failure: str | None = None
        self._updates = self._batches = 0
        self.worker: BatchWorker[list[tuple[_Utterance, Request]]] = BatchWorker("fake-engine", self._take,
                                                                                 self._run)
        self._cond = self.worker.cond

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> "FakeEngine":
        self.worker.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        self.worker.close(timeout)

    def __enter__(self) -> "FakeEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- failure injection ---------------------------------------------------------------

    def fail_updates(self, message: str | None = "the fake model failed") -> None:
        """From now on every update gives an error result with ``message`` (None: work again)."""
        with self._cond:
            self._failure = message

    # -- utterances (any thread) -----------------------------------------------------------

    def open(self, options: UtteranceOptions, callback: ResultCallback) -> int:
        with self._cond:
            if not self.worker.running:
                raise EngineClosed("the recognition engine is not running")
            if len(self._open) >= self.options.max_utterances:
                raise EngineFull(f"the engine already decodes {len(self._open)} utterances "
                                 f"(limit {self.options.max_utterances})")
            uid = next(self._ids)
            self._open[uid] = _Utterance(uid, options, callback)
            self.opened.append(options)
            return uid

    def push(self, utterance_id: int, samples: np.ndarray) -> None:
        u = self._get(utterance_id)
        count = int(np.asarray(samples).shape[0])
        with self._cond:
            if u.samples + count > self.options.max_utterance_s * SAMPLE_RATE:
                raise ValueError(f"an utterance holds at most {self.options.max_utterance_s} s of audio "
                                 "(the engine's max_utterance_s)")
            u.samples += count
            interval = int((u.options.update_interval_s or self.options.policy.update_interval_s) * SAMPLE_RATE)
            if u.options.interim_results and u.samples - u.last_update_samples >= interval:
                u.interim_end = u.last_update_samples = u.samples
                self._request(u, Request.INTERIM)

    def finish(self, utterance_id: int) -> None:
        u = self._get(utterance_id)
        with self._cond:
            self._request(u, Request.FINAL)

    def cancel(self, utterance_id: int) -> None:
        with self._cond:
            u = self._open.pop(utterance_id, None)
            if u is not None:
                u.closed = True

    def stats(self) -> FakeEngineStats:
        with self._cond:
            open_ = list(self._open.values())
            return FakeEngineStats(len(open_), sum(u.request == Request.FINAL for u in open_),
                                   sum(u.request == Request.INTERIM for u in open_), self._updates, self._batches)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request is pending and no batch runs; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self.worker.busy and all(u.request == Request.NONE for u in self._open.values()), timeout)

    def text_of(self, samples: int) -> str:
        """The scripted text of ``samples`` of utterance audio."""
        n = int(samples / SAMPLE_RATE / self.seconds_per_word)
        return " ".join(itertools.islice(itertools.cycle(self.words), n))

    # -- internals -------------------------------------------------------------------------

    def _get(self, utterance_id: int) -> _Utterance:
        with self._cond:
            u = self._open.get(utterance_id)
        if u is None:
            raise UnknownUtterance(utterance_id)
        return u

    def _request(self, u: _Utterance, request: Request) -> None:  # with self._cond held
        if request > u.request:
            u.request, u.requested_at = request, time.monotonic()
            self._cond.notify()

    def _take(self) -> list[tuple[_Utterance, Request]] | None:
        pending = [u for u in self._open.values() if u.request != Request.NONE]
        if not pending:
            return None
        pending.sort(key=lambda u: (-int(u.request), u.requested_at))
        batch = []
        for u in pending[: self.options.max_batch]:
            batch.append((u, u.request))
            u.request = Request.NONE
        return batch

    def _run(self, batch: list[tuple[_Utterance, Request]]) -> None:
        if self.update_delay_s:
            time.sleep(self.update_delay_s)  # the model's compute time
        with self._cond:
            failure = self._failure
            results = [self._result(u, request == Request.FINAL, failure) for u, request in batch]
            self._batches += 1
            self._updates += len(batch)
            for u, request in batch:
                if request == Request.FINAL:
                    self._open.pop(u.id, None)
        for (u, request), result in zip(batch, results):
            if u.closed:
                continue
            if request == Request.FINAL:
                u.closed = True
            try:
                u.callback(result)
            except Exception:  # noqa: BLE001 - as the real engine: a bad callback does not stop the worker
                log.exception("result callback of utterance %d failed", u.id)

    def _result(self, u: _Utterance, final: bool, failure: str | None) -> UpdateResult:
        covered = u.samples if final else u.interim_end
        if failure is not None:
            return UpdateResult(u.id, final, (), 0, covered, error=failure)
        words = self.text_of(covered).split()
        stable = [] if final else words[:-1]
        return UpdateResult(u.id, final, tuple(range(len(words))), len(stable), covered,
                            language=u.options.language or "English", text=" ".join(words),
                            stable_text=" ".join(stable))
