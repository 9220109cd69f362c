"""The durable queue on SQLite and PostgreSQL: exclusive claims, leases, retries, dedupe."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import select

from service.db.models import Job, Task
from service.db.session import Database
from service.errors import PermanentError, TransientError
from service.tasks.kinds import TaskKind
from service.tasks.outcomes import Reschedule
from service.tasks.queue import ClaimedTask, TaskQueue
from service.tasks.retry_policy import RetryPolicy
from service.tasks.worker import Worker


def _job(db: Database, job_id: str = "job1") -> str:
    with db.transaction() as s:
        s.add(
            Job(
                id=job_id,
                track_id=f"t-{job_id}",
                endpoint="modelslab/text2img",
                status="queued",
                params={},
                meta={},
            )
        )
    return job_id


def _enqueue(db: Database, queue: TaskQueue, n: int, kind: TaskKind = TaskKind.SUBMIT) -> None:
    with db.transaction() as s:
        for i in range(n):
            queue.enqueue(s, kind, job_id=None, payload={"n": i})


def _statuses(db: Database) -> Counter[str]:
    with db.transaction() as s:
        return Counter(s.execute(select(Task.status)).scalars())


def test_two_workers_never_run_the_same_task_at_once(db: Database) -> None:
    queue = TaskQueue(db, lease_seconds=30, default_max_attempts=3)
    _enqueue(db, queue, 40)
    running: set[int] = set()
    runs: Counter[int] = Counter()
    overlaps: list[int] = []
    lock = threading.Lock()

    def handler(task: ClaimedTask) -> None:
        with lock:
            if task.id in running:
                overlaps.append(task.id)
            running.add(task.id)
            runs[task.id] += 1
        time.sleep(0.005)
        with lock:
            running.discard(task.id)

    def never(task: ClaimedTask, exc: BaseException) -> None:
        raise AssertionError(exc)

    workers = [
        Worker(
            queue,
            {TaskKind.SUBMIT: handler},
            on_give_up=never,
            policy=RetryPolicy(),
            concurrency=4,
            worker_id=f"w{i}",
        )
        for i in range(2)
    ]

    def drain(worker: Worker) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(runs.values()) < 40:
            worker.run_once()

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert overlaps == []
    assert len(runs) == 40
    assert set(runs.values()) == {1}, "a task ran twice"
    assert _statuses(db) == Counter({"done": 40})


def test_a_task_whose_worker_died_is_taken_over_when_its_lease_runs_out(db: Database) -> None:
    queue = TaskQueue(db, lease_seconds=0.3, default_max_attempts=3)
    _enqueue(db, queue, 1)
    [held] = queue.claim("dead-worker", 5)
    assert queue.claim("other", 5) == [], "a live lease must not be taken"
    time.sleep(0.4)
    [again] = queue.claim("other", 5)
    assert again.id == held.id
    # Taken over: whether the dead worker started it is unknown, so the attempt is counted
    # when this worker starts it, durably, not at the claim.
    assert (again.attempts, again.counted) == (1, False)
    started = queue.count_attempt(again, "other")
    assert started is not None and (started.attempts, started.counted) == (2, True)
    assert queue.count_attempt(again, "dead-worker") is None, "not the lease holder"
    # The dead worker's late answer is ignored: the lease holder decides.
    assert queue.complete(held, "dead-worker") is False
    assert queue.complete(started, "other") is True
    assert _statuses(db) == Counter({"done": 1})


def test_release_on_shutdown_hands_the_task_back_without_counting_an_attempt(db: Database) -> None:
    queue = TaskQueue(db, lease_seconds=60, default_max_attempts=3)
    _enqueue(db, queue, 1)
    [task] = queue.claim("w", 1)
    queue.release([task], "w")
    [again] = queue.claim("w2", 1)
    assert again.attempts == 1


def _recording_worker(queue: TaskQueue) -> tuple[Worker, list[int], list[str]]:
    """A worker whose submit handler notes each run's attempt number; and why it gave up."""
    ran: list[int] = []
    given_up: list[str] = []

    def record(task: ClaimedTask) -> None:
        ran.append(task.attempts)

    worker = Worker(
        queue,
        {TaskKind.SUBMIT: record},
        on_give_up=lambda t, e: given_up.append(str(e)),
        policy=RetryPolicy(max_attempts=2, base_seconds=0.01, max_seconds=0.01),
    )
    return worker, ran, given_up


def test_tasks_a_crashing_worker_held_without_starting_them_keep_their_attempts(
    db: Database,
) -> None:
    # A worker claims ahead of its runners (prefetch.py): when it dies, what it held without
    # starting comes back with its lease. Five such deaths must not fail a task allowed two.
    queue = TaskQueue(db, lease_seconds=0.05, default_max_attempts=2)
    _enqueue(db, queue, 1)
    for n in range(5):
        assert len(queue.claim(f"crashed-{n}", 10)) == 1
        time.sleep(0.06)
    worker, ran, given_up = _recording_worker(queue)
    assert worker.run_once() == 1
    # Counted once at its first claim (that worker may have started it), once now.
    assert ran == [2] and given_up == []
    assert _statuses(db) == Counter({"done": 1})


def test_a_task_that_kills_its_worker_whenever_it_starts_still_runs_out_of_attempts(
    db: Database,
) -> None:
    queue = TaskQueue(db, lease_seconds=0.05, default_max_attempts=2)
    _enqueue(db, queue, 1)
    for n in range(3):
        [task] = queue.claim(f"crashed-{n}", 1)
        # Started (its attempt counted before the handler runs), then the worker died.
        assert queue.count_attempt(task, f"crashed-{n}") is not None
        time.sleep(0.06)
    worker, ran, given_up = _recording_worker(queue)
    assert worker.run_once() == 1
    assert ran == [], "a fourth start of a task allowed two"
    assert given_up == ["gave up after 2 attempts"]
    assert _statuses(db) == Counter({"failed": 1})


def test_a_taken_over_task_given_back_unstarted_keeps_its_attempts(db: Database) -> None:
    queue = TaskQueue(db, lease_seconds=0.05, default_max_attempts=3)
    _enqueue(db, queue, 2)
    first = queue.claim("crashed", 2)
    assert [t.attempts for t in first] == [1, 1]
    time.sleep(0.06)
    # One taken over and started here, one taken over and handed back unstarted (shutdown).
    taken = queue.claim("w", 2)
    assert [t.counted for t in taken] == [False, False]
    started = queue.count_attempt(taken[0], "w")
    assert started is not None
    queue.release([started, taken[1]], "w")
    with db.transaction() as s:
        attempts = dict(s.execute(select(Task.id, Task.attempts)).all())
    # The started one gives its attempt back, as any released task does; the other had not
    # counted one, so it has nothing to give back.
    assert attempts == {taken[0].id: 1, taken[1].id: 1}


def test_transient_errors_retry_with_backoff_and_permanent_ones_give_up_at_once(
    db: Database,
) -> None:
    queue = TaskQueue(db, lease_seconds=60, default_max_attempts=5)
    given_up: list[tuple[str, str]] = []
    _enqueue(db, queue, 1, kind=TaskKind.POLL)
    _enqueue(db, queue, 1, kind=TaskKind.ARCHIVE)

    def flaky(task: ClaimedTask) -> None:
        raise TransientError("provider hiccup", retry_after=0)

    def broken(task: ClaimedTask) -> None:
        raise PermanentError("bad image", code="invalid_image")

    worker = Worker(
        queue,
        {TaskKind.POLL: flaky, TaskKind.ARCHIVE: broken},
        on_give_up=lambda t, e: given_up.append((t.kind, str(e))),
        policy=RetryPolicy(max_attempts=3, base_seconds=0.01, max_seconds=0.01),
    )
    for _ in range(20):
        worker.run_once()
        if len(given_up) == 2:
            break
        time.sleep(0.02)
    assert (TaskKind.ARCHIVE, "bad image") in given_up
    flaky_gave_up = [m for k, m in given_up if k == TaskKind.POLL]
    assert flaky_gave_up and "gave up after 3 attempts" in flaky_gave_up[0]
    with db.transaction() as s:
        tasks = {t.kind: t for t in s.execute(select(Task)).scalars()}
    assert tasks[TaskKind.ARCHIVE].attempts == 1 and tasks[TaskKind.ARCHIVE].status == "failed"
    assert tasks[TaskKind.POLL].attempts == 3 and tasks[TaskKind.POLL].status == "failed"


def test_dedupe_key_collapses_and_revive_brings_a_finished_task_back(db: Database) -> None:
    queue = TaskQueue(db, lease_seconds=60, default_max_attempts=3)
    job_id = _job(db)
    for _ in range(3):
        with db.transaction() as s:
            queue.enqueue(s, TaskKind.ARCHIVE, job_id=job_id, dedupe_key=f"archive:{job_id}")
    assert _statuses(db) == Counter({"queued": 1})
    [task] = queue.claim("w", 5)
    queue.fail(task, "w", "boom")
    with db.transaction() as s:
        queue.enqueue(s, TaskKind.ARCHIVE, job_id=job_id, dedupe_key=f"archive:{job_id}")
    assert _statuses(db) == Counter({"failed": 1}), "a plain enqueue must not revive"
    with db.transaction() as s:
        queue.enqueue(
            s, TaskKind.ARCHIVE, job_id=job_id, dedupe_key=f"archive:{job_id}", revive=True
        )
    [again] = queue.claim("w", 5)
    assert again.id == task.id and again.attempts == 1


def test_reschedule_runs_the_task_again_later(db: Database) -> None:
    queue = TaskQueue(db, lease_seconds=60, default_max_attempts=5)
    _enqueue(db, queue, 1, kind=TaskKind.POLL)
    seen: list[int] = []

    def poll(task: ClaimedTask) -> Reschedule | None:
        seen.append(task.attempts)
        return Reschedule(0.2) if len(seen) < 2 else None

    worker = Worker(
        queue, {TaskKind.POLL: poll}, on_give_up=lambda t, e: None, policy=RetryPolicy()
    )
    assert worker.run_once() == 1
    assert worker.run_once() == 0, "not due yet"
    time.sleep(0.25)
    assert worker.run_once() == 1
    assert seen == [1, 2]
    assert _statuses(db) == Counter({"done": 1})


def test_worker_loop_stops_promptly_and_releases_what_it_cannot_finish(db: Database) -> None:
    queue = TaskQueue(db, lease_seconds=60, default_max_attempts=3)
    _enqueue(db, queue, 1, kind=TaskKind.ARCHIVE)
    started, finish = threading.Event(), threading.Event()

    def slow(task: ClaimedTask) -> None:
        started.set()
        finish.wait(3)

    worker = Worker(
        queue,
        {TaskKind.ARCHIVE: slow},
        on_give_up=lambda t, e: None,
        policy=RetryPolicy(),
        poll_interval=0.05,
        shutdown_grace=0.2,
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(5)
    t0 = time.monotonic()
    worker.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - t0 < 2
    [again] = queue.claim("next", 1)
    assert again.attempts == 1, "released work is handed back untried"
    finish.set()
    deadline = time.monotonic() + 5
    while worker.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("attempt", [1, 2, 5, 30])
def test_retry_delay_is_jittered_capped_and_exponential(attempt: int) -> None:
    policy = RetryPolicy(max_attempts=100, base_seconds=2, max_seconds=60)
    ceiling = min(60, 2 * 2 ** (attempt - 1))
    delays = [policy.delay(attempt, TransientError()) for _ in range(50)]
    assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays)


def test_prefetched_tasks_keep_their_lease_and_go_back_untried_when_they_wait_too_long(
    db: Database,
) -> None:
    # A lease shorter than the wait below: only the heartbeat keeps the waiting tasks ours.
    queue = TaskQueue(db, lease_seconds=1.2, default_max_attempts=3)
    _enqueue(db, queue, 60)
    runs: Counter[int] = Counter()
    ran_by: dict[str, list[int]] = {"a": [], "b": []}
    blocked, unblock = threading.Event(), threading.Event()
    lock = threading.Lock()

    def handler_for(name: str) -> Callable[[ClaimedTask], None]:
        def handler(task: ClaimedTask) -> None:
            with lock:
                runs[task.id] += 1
                ran_by[name].append(task.id)
            if task.payload["n"] == 20:
                blocked.set()
                unblock.wait(15)
            else:
                time.sleep(0.001)

        return handler

    def worker(name: str) -> Worker:
        return Worker(
            queue,
            {TaskKind.SUBMIT: handler_for(name)},
            on_give_up=lambda t, e: None,
            policy=RetryPolicy(),
            concurrency=1,
            poll_interval=0.05,
            worker_id=name,
        )

    a, b = worker("a"), worker("b")
    threads = [threading.Thread(target=w.run) for w in (a, b)]
    threads[0].start()
    try:
        assert blocked.wait(10)
        # Its one runner is stuck on the 21st task; the rest wait in its buffer, claimed.
        deadline = time.monotonic() + 5
        while a.in_flight != 60 - 20:  # the 20 before it are being recorded done
            assert time.monotonic() < deadline, a.in_flight
            time.sleep(0.01)
        threads[1].start()  # a second worker, polling for due or lapsed tasks meanwhile
        # After a while, worker a gives the waiting tasks back and worker b runs them.
        deadline = time.monotonic() + 15
        while len(ran_by["b"]) < 60 - 21:
            assert time.monotonic() < deadline, len(ran_by["b"])
            time.sleep(0.05)
        unblock.set()
        deadline = time.monotonic() + 10
        while _statuses(db) != Counter({"done": 60}):
            assert time.monotonic() < deadline, _statuses(db)
            time.sleep(0.05)
    finally:
        unblock.set()
        for w in (a, b):
            w.stop()
        for t in threads:
            if t.is_alive():
                t.join(timeout=10)
    assert set(runs.values()) == {1} and len(runs) == 60, "a task ran twice"
    with db.transaction() as s:
        attempts = Counter(s.execute(select(Task.attempts)).scalars())
    # Handed back untried while a's lease held (renewed while they waited), not taken over
    # once it had lapsed: that would have counted a second attempt.
    assert attempts == Counter({1: 60})
