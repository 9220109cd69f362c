"""Group commit (db/group_commit.py): batches form while a write is in flight, each caller
gets its own result or the batch's error, and nobody returns before its batch was written."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.db.group_commit import GroupCommit


class Recorder:
    """A write that blocks until released, so the test decides when batches form."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.written: set[int] = set()
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, items: Sequence[int]) -> list[int]:
        self.entered.set()
        self.release.wait(5)
        self.batches.append(list(items))
        self.written.update(items)
        return [i * 10 for i in items]


def _wait_queued(group: GroupCommit[int, int], n: int) -> None:
    for _ in range(500):
        with group._lock:  # the test waits for callers to have queued
            if len(group._queued) >= n:
                return
        threading.Event().wait(0.01)
    raise AssertionError(f"{n} callers never queued")


def test_a_lone_caller_writes_at_once() -> None:
    rec = Recorder()
    rec.release.set()
    group = GroupCommit(rec.write)
    assert group.submit(3) == 30
    assert rec.batches == [[3]]


def test_callers_that_arrive_during_a_write_share_the_next_one() -> None:
    rec = Recorder()
    group = GroupCommit(rec.write)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(group.submit, 0)
        assert rec.entered.wait(5)
        rest = [pool.submit(group.submit, i) for i in range(1, 8)]
        _wait_queued(group, 7)
        assert not any(f.done() for f in rest), "nobody returns before its write"
        rec.release.set()
        assert first.result(5) == 0
        assert [f.result(5) for f in rest] == [i * 10 for i in range(1, 8)]
    assert rec.batches[0] == [0]
    assert sorted(rec.batches[1]) == list(range(1, 8)), "the seven shared one write"
    assert len(rec.batches) == 2


def test_batches_never_exceed_max_batch_and_every_item_is_written_once() -> None:
    rec = Recorder()
    group = GroupCommit(rec.write, max_batch=3)
    with ThreadPoolExecutor(10) as pool:
        first = pool.submit(group.submit, 0)
        assert rec.entered.wait(5)
        rest = [pool.submit(group.submit, i) for i in range(1, 10)]
        _wait_queued(group, 9)
        rec.release.set()
        results = [first.result(5)] + [f.result(5) for f in rest]
    assert results == [i * 10 for i in range(10)]
    assert max(len(b) for b in rec.batches) <= 3
    assert sorted(i for b in rec.batches for i in b) == list(range(10))


def test_a_failed_write_fails_every_caller_of_that_batch_and_no_other() -> None:
    calls = 0
    gate = threading.Event()
    entered = threading.Event()

    def write(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            gate.wait(5)
            return list(items)
        if calls == 2:
            raise RuntimeError("the database went away")
        return list(items)

    group = GroupCommit(write)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(group.submit, 1)
        assert entered.wait(5)
        doomed = [pool.submit(group.submit, i) for i in (2, 3)]
        _wait_queued(group, 2)
        gate.set()
        assert first.result(5) == 1
        for f in doomed:
            with pytest.raises(RuntimeError, match="went away"):
                f.result(5)
    assert group.submit(4) == 4, "the next batch writes again"


def test_a_write_that_returns_the_wrong_number_of_results_is_an_error() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda items: [])
    with pytest.raises(AssertionError, match="0 results for 1 items"):
        group.submit(1)


def test_a_written_caller_returns_while_the_next_batch_is_still_being_written() -> None:
    # Each caller is woken for itself: a finished batch does not wait on the next one.
    gates = [threading.Event(), threading.Event()]
    entered = [threading.Event(), threading.Event()]
    calls = 0

    def write(items: Sequence[int]) -> list[int]:
        nonlocal calls
        n = calls = calls + 1
        if n <= 2:
            entered[n - 1].set()
            assert gates[n - 1].wait(5)
        return list(items)

    group = GroupCommit(write)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(group.submit, 1)
        assert entered[0].wait(5)
        second = [pool.submit(group.submit, i) for i in (2, 3)]
        _wait_queued(group, 2)
        gates[0].set()  # batch [1] done; 2 leads [2, 3], which blocks
        assert entered[1].wait(5)
        assert first.result(5) == 1
        third = pool.submit(group.submit, 4)
        _wait_queued(group, 1)
        assert not third.done() and not any(f.done() for f in second)
        gates[1].set()
        assert [f.result(5) for f in second] == [2, 3]
        assert third.result(5) == 4


def test_what_queues_while_the_leader_waits_for_its_turn_joins_its_batch() -> None:
    """The turn (on SQLite, the writers of other processes) is taken before the batch: the
    callers that arrive while the leader waits for it are written with it, not after."""
    turn = threading.Lock()
    batches: list[list[int]] = []

    def write(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(write, turn=lambda: turn)
    turn.acquire()  # another process is writing
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(group.submit, i) for i in range(4)]
        _wait_queued(group, 4)
        turn.release()
        assert [f.result(5) for f in futures] == [0, 10, 20, 30]
    assert batches == [[0, 1, 2, 3]]


def test_a_turn_that_fails_fails_its_callers_and_the_next_one_writes() -> None:
    calls = 0

    def turn() -> threading.Lock:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("the lock file is gone")
        return threading.Lock()

    group: GroupCommit[int, int] = GroupCommit(list, turn=turn)
    with pytest.raises(OSError, match="lock file"):
        group.submit(1)
    assert group.submit(2) == 2


def test_writer_turns_are_exclusive_across_files_opened_apart_and_freed_by_an_error(
    tmp_path: Path,
) -> None:
    """WriterTurns (jobs/ingest.py), the turn GroupCommit's leaders take on SQLite: two of
    them on one database exclude each other as two processes would (an flock on separate
    opens of the lock file), and a write that raises gives the turn up."""
    from service.jobs.ingest import WriterTurns

    first, second = WriterTurns(str(tmp_path / "db")), WriterTurns(str(tmp_path / "db"))
    entered = threading.Event()

    def take_second() -> None:
        with second.turn():
            entered.set()

    waiter = threading.Thread(target=take_second)

    def failing_write() -> None:
        with first.turn():
            waiter.start()
            assert not entered.wait(0.2), "the second took a turn the first holds"
            raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError):
        failing_write()
    assert entered.wait(5), "the failed write did not give its turn up"
    waiter.join(5)
    with first.turn():  # and the first can take it again, from this thread or another
        pass
