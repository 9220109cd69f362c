"""Group commit: writes that arrive while one is in flight share the next transaction.

A commit costs a round trip and a WAL flush whatever it holds, and under load most of a
small write's cost is the commit, not the rows. Measured under load (bench/ingest.py, CPU
per request), writing each callback alone instead cost PostgreSQL twice the server CPU,
and webhook ingest fell from 0.84x to 0.67x of the naive receiver on SQLite. So each
caller queues its item; whoever finds no write in flight becomes the leader, takes
everything queued (up to ``max_batch``) and writes it in one transaction. The leader then
wakes each caller of its batch with its own result (or the batch's exception), and hands
the lead to the first caller still queued, if any. Every caller returns only after the
transaction holding its item committed: the durability of one write per caller, at the
cost of one write per batch.

No thread of our own: the leader is a caller, so an idle process holds nothing and a lone
caller pays no hand-off. Each waiting caller sleeps on a lock of its own and is woken once,
when there is something for it to do (its batch written, or its turn to lead). A shared
condition variable woke every waiter at the end of every batch: with 8 threads and 0.5 ms
writes that cost 31-51 us of CPU per item against 20-30 us now (a micro-benchmark; in
bench/ingest.py the difference is within the machine's noise).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None
        # Given only to a caller that waits (see submit): the one that leads needs none.
        self.wake: threading.Lock | None = None


class GroupCommit(Generic[T, R]):
    """``submit(item)`` runs ``write_batch`` over a batch of items, one batch at a time.

    ``write_batch`` gets the items in arrival order and returns one result per item, in the
    same order; if it raises, every caller in that batch gets the exception.
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], Sequence[R]],
        max_batch: int = 64,
        turn: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write_batch = write_batch
        self._max_batch = max_batch
        # Entered by the leader before it takes its batch: what queues while it waits for
        # its turn (another process's write, on SQLite) joins this batch, not the next.
        self._turn = turn
        self._lock = threading.Lock()
        self._queued: list[_Slot[T, R]] = []
        self._writing = False

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._lock:
            self._queued.append(slot)
            lead = not self._writing
            if lead:
                self._writing = True
            else:
                # Made held, under the lock: the leader that takes this slot releases it.
                slot.wake = wake = threading.Lock()
                wake.acquire()
        if not lead:
            # Woken once: our batch was written, or it is our turn to lead.
            wake.acquire()
        while not slot.done:
            # With more than max_batch queued ahead of us, we may lead more than once.
            self._lead(slot)
        if slot.error is not None:
            # The same exception object in each caller of the batch: each request answers
            # for itself (a database outage is a 503 to every one of them).
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _take(self) -> list[_Slot[T, R]]:
        with self._lock:
            batch = self._queued[: self._max_batch]
            del self._queued[: self._max_batch]
        return batch

    def _lead(self, me: _Slot[T, R]) -> None:
        batch: list[_Slot[T, R]] = []
        try:
            with self._turn():
                batch = self._take()
                results = self._write_batch([s.item for s in batch])
            if len(results) != len(batch):
                raise AssertionError(f"{len(results)} results for {len(batch)} items")
            for s, result in zip(batch, results, strict=True):
                s.result = result
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            batch = batch or self._take()  # the turn itself failed: fail what it was for
            for s in batch:
                s.error = exc
        for s in batch:
            s.done = True
        with self._lock:
            # Still writing for whoever queued meanwhile: the lead passes to the first of
            # them (or stays with us, if our own item is among them).
            successor = self._queued[0] if me.done and self._queued else None
            if me.done and successor is None:
                self._writing = False
        for s in batch:
            if s is not me:
                _wake(s)
        if successor is not None:
            _wake(successor)


def _wake(slot: _Slot[T, R]) -> None:
    # Only a caller that waits is ever woken (a leader's own slot is taken by itself), and
    # every waiting caller has its lock.
    assert slot.wake is not None
    slot.wake.release()
