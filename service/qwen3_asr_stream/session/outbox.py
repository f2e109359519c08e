"""The responses of one stream, in stream order, waiting for the gRPC writer.

A final result takes its place in the order when its utterance ends (``reserve``)
and is filled in later, when the engine and the aligner are done; nothing after it
is sent before it. Interim results that nobody has read yet are coalesced: a newer
interim of the same utterance replaces the unread one, so a client that reads slowly
gets the latest text, not a backlog. Finals and speech events are never dropped;
the reader of the client's audio waits (``wait_room``) while ``max_items`` responses
are unread, so a client that never reads cannot grow the server's memory.

Asyncio only: every method runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from .errors import Status


class Slot:
    """A place in the order; ``value`` is None until the response is ready."""

    __slots__ = ("value", "interim_of")

    def __init__(self, value: Any = None, interim_of: int | None = None) -> None:
        self.value = value
        self.interim_of = interim_of  # utterance index of an interim result (coalescable)


class Outbox:
    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: deque[Slot] = deque()
        self._terminal: Status | None = None  # how the call ends, after the items before it
        self._aborted = False
        self._changed = asyncio.Event()
        self.coalesced = 0
        self._sending_since: float | None = None
        self.high_water = 0  # most items queued at once (for tests and logs)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def ending(self) -> bool:
        """The end of the call is decided; nothing new is accepted."""
        return self._terminal is not None

    def put(self, value: Any) -> None:
        """A response that is ready now (a speech event)."""
        if not self.ending:
            self._append(Slot(value))

    def put_interim(self, utterance: int, value: Any) -> None:
        """An interim result; replaces an unread interim of the same utterance at the tail."""
        if self.ending:
            return
        if self._items and self._items[-1].interim_of == utterance:
            self._items[-1].value = value
            self.coalesced += 1
            self._changed.set()
            return
        self._append(Slot(value, interim_of=utterance))

    def reserve(self) -> Slot:
        """The place of a final result whose value comes later (``fill``)."""
        slot = Slot()
        if not self.ending:
            self._append(slot)
        return slot

    def fill(self, slot: Slot, value: Any) -> None:
        assert slot.value is None, "a final result is filled once"
        slot.value = value
        self._changed.set()

    def end(self, status: Status) -> None:
        """End the call with ``status`` once every response queued so far is sent."""
        if not self.ending:
            self._terminal = status
            self._changed.set()

    def abort(self, status: Status) -> None:
        """End the call with ``status`` now; unsent responses are dropped."""
        if self._aborted:
            return
        self._aborted = True
        self._items.clear()
        self._terminal = status
        self._changed.set()

    async def next(self) -> Any:
        """The next response in order, or the terminal Status when the call is over.

        The caller sends each response before it asks for the next one; the time in
        between is how long the client takes to accept it (``sending_for``).
        """
        self._sending_since = None
        while True:
            if self._items and self._items[0].value is not None:
                value = self._items.popleft().value
                self._changed.set()  # room for a waiting reader
                self._sending_since = asyncio.get_running_loop().time()
                return value
            if not self._items and self._terminal is not None:
                return self._terminal
            self._changed.clear()
            await self._changed.wait()

    def take_ready(self) -> Any:
        """The next response if it is ready now, else None (never the terminal Status)."""
        if self._items and self._items[0].value is not None:
            value = self._items.popleft().value
            self._changed.set()
            return value
        return None

    def sending_for(self) -> float:
        """Seconds the response taken last has been waiting to be sent (0 when none is):
        a client that reads nothing blocks gRPC's send after its flow-control window."""
        if self._sending_since is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._sending_since

    async def wait_room(self, timeout: float) -> bool:
        """Wait until fewer than ``max_items`` responses are queued; False after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self._items) >= self.max_items and not self.ending:
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return False
        return True

    def _append(self, slot: Slot) -> None:
        self._items.append(slot)
        self.high_water = max(self.high_water, len(self._items))
        self._changed.set()
