"""Group commit: writes that arrive while one is in flight share the next transaction.

A commit costs a round trip and a WAL flush whatever it holds, and under load most of a
small write's cost is the commit, not the rows (bench/ingest.py). So each caller queues its
item and waits; whoever finds no write in flight becomes the leader, takes everything queued
(up to ``max_batch``) and writes it in one transaction; the followers wake with their own
result, or with the batch's exception. Every caller still returns only after the
transaction holding its item committed: the durability of one write per caller, at the cost
of one write per batch.

No thread of our own: the leader is a caller, so an idle process holds nothing and a lone
caller pays no hand-off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = False
        self.result: R | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """``submit(item)`` runs ``write_batch`` over a batch of items, one batch at a time.

    ``write_batch`` gets the items in arrival order and returns one result per item, in the
    same order; if it raises, every caller in that batch gets the exception.
    """

    def __init__(self, write_batch: Callable[[Sequence[T]], Sequence[R]], max_batch: int = 64):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._queued: list[_Slot[T, R]] = []
        self._writing = False

    def submit(self, item: T) -> R:
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queued.append(slot)
        while True:
            with self._cond:
                # Wait for our result, or for our turn to lead (nobody writing).
                while not slot.done and self._writing:
                    self._cond.wait()
                if slot.done:
                    break
                batch = self._queued[: self._max_batch]
                del self._queued[: self._max_batch]
                self._writing = True
            # Outside the lock: followers queue up for the next batch meanwhile. With more
            # than max_batch queued, our own item may be in a later batch: lead again.
            self._lead(batch)
        if slot.error is not None:
            # The same exception object in each caller of the batch: each request answers
            # for itself (a database outage is a 503 to every one of them).
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _lead(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results = self._write_batch([s.item for s in batch])
            if len(results) != len(batch):
                raise AssertionError(f"{len(results)} results for {len(batch)} items")
            for s, result in zip(batch, results, strict=True):
                s.result = result
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for s in batch:
                s.error = exc
        finally:
            with self._cond:
                for s in batch:
                    s.done = True
                self._writing = False
                self._cond.notify_all()
