"""One worker thread that takes batches of work under a lock and runs them outside it.

The streaming engine (and any other single-consumer queue) shares this loop:

    worker = BatchWorker("asr-engine", take=take_batch, run=run_batch)
    worker.start()
    with worker.cond:            # producers change the shared state under this lock
        ...
        worker.cond.notify()     # wake the thread
    worker.close()

``take()`` is called with ``worker.cond`` held and returns a batch, or None when there
is nothing to do (the thread then waits for a notify, or at most ``idle_wait()`` seconds
when that gives a number: work that becomes due by time); ``run(batch)`` is called
without the lock. After ``close()`` no new batch is taken; a batch already running finishes.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class BatchWorker(Generic[T]):
    def __init__(self, name: str, take: Callable[[], T | None], run: Callable[[T], None],
                 idle_wait: Callable[[], float | None] = lambda: None) -> None:
        self.name = name
        self.cond = threading.Condition()
        self._take = take
        self._run = run
        self._idle_wait = idle_wait
        self._running = False
        self._busy = False
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True between start() and close() (read it with ``cond`` held for a stable answer)."""
        return self._running

    @property
    def busy(self) -> bool:
        """True while a batch runs (read it with ``cond`` held); ``cond`` is notified when it ends."""
        return self._busy

    def start(self) -> None:
        with self.cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = 10.0) -> None:
        with self.cond:
            self._running = False
            self.cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self.cond:
                batch = None
                while self._running and (batch := self._take()) is None:
                    self.cond.wait(self._idle_wait())
                if not self._running:
                    return
                self._busy = True
            try:
                self._run(batch)
            finally:
                with self.cond:
                    self._busy = False
                    self.cond.notify_all()


R = TypeVar("R")


class RequestQueue(Generic[R]):
    """Requests of every stream, each with a ``concurrent.futures.Future``, run in batches on one
    ``BatchWorker`` thread (the aligner's and the speaker model's queues).

    A subclass picks a batch from ``self._queue`` in ``_take`` (called with the lock held; a
    request whose future was cancelled while queued is skipped by ``set_running_or_notify_cancel``)
    and runs it in ``_run``, setting each future's result or exception.
    """

    def __init__(self, name: str, what: str) -> None:
        self._what = what  # for the error when nothing runs the queue
        self._queue: deque[tuple[R, Future]] = deque()
        self._worker: BatchWorker[list[tuple[R, Future]]] = BatchWorker(name, take=self._take, run=self._run)

    def start(self):
        self._worker.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the thread; requests still queued are cancelled."""
        with self._worker.cond:
            pending = list(self._queue)
            self._queue.clear()
        self._worker.close(timeout)
        for _, future in pending:
            future.cancel()

    @property
    def queued(self) -> int:
        with self._worker.cond:
            return len(self._queue)

    def _submit(self, request: R) -> Future:
        future: Future = Future()
        with self._worker.cond:
            if not self._worker.running:
                raise RuntimeError(f"the {self._what} is not running")
            self._queue.append((request, future))
            self._worker.cond.notify()
        return future

    def _take(self) -> list[tuple[R, Future]] | None:
        raise NotImplementedError

    def _run(self, batch: list[tuple[R, Future]]) -> None:
        raise NotImplementedError
