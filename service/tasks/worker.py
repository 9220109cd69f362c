"""The worker loop: claim → run → record. Small, stoppable, and testable with run_once().

Claimed tasks wait in a bounded local buffer (prefetch.py) for one of ``concurrency``
runner threads; a plain success is recorded by the completion recorder (completions.py),
every other answer by the runner itself (outcomes.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TypeVar

from service import metrics
from service.db.availability import DatabaseUnavailable, OutageNotice, is_unavailable
from service.errors import PermanentError
from service.tasks.completions import CompletionRecorder
from service.tasks.kinds import TaskKind
from service.tasks.outcomes import GiveUp, OutcomeWriter, Reschedule
from service.tasks.prefetch import Prefetch
from service.tasks.queue import ClaimedTask, TaskQueue
from service.tasks.retry_policy import RetryPolicy
from service.tasks.wakeup import Wakeup

log = logging.getLogger(__name__)
T = TypeVar("T")


class _LeaseLost:
    """The answer for a task taken over by another worker before this one could start it."""


_LEASE_LOST = _LeaseLost()


Handler = Callable[[ClaimedTask], Reschedule | None]


@dataclass(frozen=True)
class Periodic:
    """Work the worker does every ``interval`` seconds besides tasks (the reconciler)."""

    name: str
    interval: float
    run: Callable[[], object]


class Worker:
    def __init__(
        self,
        queue: TaskQueue,
        handlers: Mapping[TaskKind, Handler],
        *,
        on_give_up: GiveUp,
        policy: RetryPolicy,
        concurrency: int = 4,
        poll_interval: float = 1.0,
        periodic: Sequence[Periodic] = (),
        shutdown_grace: float = 25.0,
        worker_id: str | None = None,
        abandon_writes: threading.Event | None = None,
        wakeup: Wakeup | None = None,
        intake: Callable[[], bool] | None = None,
    ) -> None:
        self.queue = queue
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.periodic = list(periodic)
        self.shutdown_grace = shutdown_grace
        self.wakeup = wakeup
        # Work that arrives outside the queue (webhook callbacks, jobs/applying.py): taken
        # before each claim; True when more may be waiting.
        self.intake = intake
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stop_event = threading.Event()
        self._held: dict[int, ClaimedTask] = {}
        self._lock = threading.Lock()
        self.wake_event = threading.Event()
        self._next_periodic = {p.name: 0.0 for p in self.periodic}
        # Set when shutdown's grace runs out: outcome writes stop waiting for the database.
        self._abandon_writes = abandon_writes or threading.Event()
        # The heartbeat outlives the stop event: tasks finishing during shutdown stay leased.
        self._heartbeat_stop = threading.Event()
        # Claimed tasks wait here for a runner (tasks/prefetch.py); finished ones are
        # recorded done in batches by one thread (tasks/completions.py).
        self._prefetch = Prefetch(concurrency, on_room=self.wake_event.set)
        self._outcomes = OutcomeWriter(
            queue,
            self.id,
            on_give_up=on_give_up,
            policy=policy,
            abandon_writes=self._abandon_writes,
        )
        self._completions = CompletionRecorder(
            queue, self.id, settle=self._settle, abandon_writes=self._abandon_writes
        )
        # Claims fail every poll while the database is away: said once, not every time.
        self._claim_outage = OutageNotice(
            log,
            "database unavailable; claiming paused until it answers",
            "database available again; claiming resumed",
        )
        self._intake_outage = OutageNotice(
            log,
            "database unavailable; applying callbacks paused until it answers",
            "database available again; applying callbacks resumed",
        )

    @property
    def in_flight(self) -> int:
        """Tasks claimed and not yet settled (waiting, running, or their outcome unwritten)."""
        with self._lock:
            return len(self._held)

    def stop(self) -> None:
        self.stop_event.set()
        self.wake_event.set()

    # -- one task ---------------------------------------------------------------------------

    def execute(self, task: ClaimedTask, *, batched: bool = False) -> None:
        """Run one claimed task and record its outcome, in this thread. Never raises.

        The task stays held (its lease renewed by the heartbeat) until its outcome is
        written: a database outage delays the write, it does not lose the outcome.
        ``batched`` (the run loop's runners): a plain success is handed to the completion
        recorder, which writes it with the others finishing alongside, and the runner moves on.
        """
        started = time.monotonic()
        task, answer = self._attempt(task)
        if isinstance(answer, _LeaseLost):
            self._settle(task, started, "lease_lost")
        elif not (batched and answer is None and self._completions.add(task, started)):
            self._record(task, started, answer)

    def _attempt(
        self, task: ClaimedTask
    ) -> tuple[ClaimedTask, Reschedule | Exception | _LeaseLost | None]:
        """The task as run (its attempt counted) and the handler's answer, or what it raised."""
        try:
            counted = self.queue.count_attempt(task, self.id)
            if counted is None:
                return task, _LEASE_LOST  # taken over by another worker meanwhile: not ours
            if counted is not task:
                task = counted
                with self._lock:
                    self._held[task.id] = task  # a release now knows the attempt counted
            handler = self.handlers.get(task.kind)
            if handler is None:
                raise PermanentError(f"no handler for task kind {task.kind!r}")
            if task.attempts > task.max_attempts:
                # Started too often without an outcome: its workers keep dying on it.
                raise PermanentError(f"gave up after {task.max_attempts} attempts")
            return task, handler(task)
        except Exception as exc:  # noqa: BLE001 - every failure is classified and recorded
            return task, exc

    def _record(
        self, task: ClaimedTask, started: float, answer: Reschedule | Exception | None
    ) -> None:
        # Nothing is "done" until the database says so.
        outcome = "unrecorded"
        try:
            outcome = self._outcomes.write(task, answer)
        except DatabaseUnavailable:
            # Stopping while the database is away: the lease brings the task back.
            log.warning("leaving the task to its lease", extra={"task_id": task.id})
        except Exception:  # a bug must not kill the runner silently
            log.exception("recording a task outcome failed", extra={"task_id": task.id})
        finally:
            self._settle(task, started, outcome)

    def _settle(self, task: ClaimedTask, started: float, outcome: str) -> None:
        """The task's outcome is written (or left to its lease): let it go, and say so."""
        with self._lock:
            self._held.pop(task.id, None)
        seconds = time.monotonic() - started
        metrics.TASKS.labels(task.kind, outcome).inc()
        metrics.TASK_SECONDS.labels(task.kind).observe(seconds)
        log.info(
            "task %s",
            outcome,
            extra={
                "task_id": task.id,
                "kind": task.kind,
                "job_id": task.job_id,
                "attempt": task.attempts,
                "seconds": round(seconds, 3),
            },
        )

    # -- the loop ---------------------------------------------------------------------------

    def run_once(self) -> int:
        """Take the intake, then claim what is due (up to the concurrency) and run it to the
        end, in this thread; how many tasks ran."""
        self._run_periodic()
        while self._take_intake():
            pass
        tasks = self.queue.claim(self.id, self.concurrency)
        for task in tasks:
            with self._lock:
                self._held[task.id] = task
            self.execute(task)
        return len(tasks)

    def run(self) -> None:
        """Run until ``stop_event`` is set; then finish or release what is held."""
        log.info("worker started", extra={"worker_id": self.id, "concurrency": self.concurrency})
        heartbeat = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        heartbeat.start()
        recorder = threading.Thread(target=self._completions.run, name="task-done", daemon=True)
        recorder.start()
        for n in range(self.concurrency):
            threading.Thread(target=self._runner, name=f"task-{n}", daemon=True).start()
        listener = None
        if self.wakeup is not None:
            # Blocks in the kernel (LISTEN / a socket) and sets wake_event when work is queued.
            listener = threading.Thread(
                target=self.wakeup.listen,
                args=(self.wake_event.set, self.stop_event),
                name="task-wakeup",
                daemon=True,
            )
            listener.start()
        try:
            while not self.stop_event.is_set():
                # Cleared before claiming, so a wake-up that arrives during the claim is kept.
                self.wake_event.clear()
                self._run_periodic()
                more_intake = self._take_intake()
                self._hand_back(self._prefetch.overdue())
                wanted = self._prefetch.wanted()
                if wanted:
                    claimed = self._claim_safely(wanted)
                    if claimed is None:
                        self.stop_event.wait(self.poll_interval)  # the database may be away
                        continue
                    more = len(claimed) == wanted
                    self._prefetch.put(self._not_held(claimed), more=more)
                    if more:
                        continue
                if more_intake:
                    continue
                # Nothing more is due, or enough is in hand: sleep until new work, room for
                # more (the prefetch says), a stop, or the interval.
                self.wake_event.wait(self.poll_interval)
        finally:
            self._drain(recorder)
            self._heartbeat_stop.set()
            if listener is not None:
                listener.join(timeout=2)  # it sees the stop within a second and cleans up
            log.info("worker stopped", extra={"worker_id": self.id})

    def _runner(self) -> None:
        """One of ``concurrency`` threads: run prefetched tasks until the prefetch closes."""
        while (task := self._prefetch.take()) is not None:
            try:
                self.execute(task, batched=True)
            except Exception:  # it never raises; if it does, the log must show it
                log.exception("task runner failed", extra={"task_id": task.id})
            self._prefetch.done(task)

    def _not_held(self, claimed: list[ClaimedTask]) -> list[ClaimedTask]:
        """Hold what was claimed, except tasks this worker still runs.

        After a database outage longer than the lease, a task whose outcome is still waiting
        to be written looks abandoned; running it a second time here would race with itself.
        """
        fresh = []
        with self._lock:
            for task in claimed:
                if task.id not in self._held:
                    self._held[task.id] = task
                    fresh.append(task)
        return fresh

    def _take_intake(self) -> bool:
        """Run the intake once; whether more may be waiting (False if it failed)."""
        if self.intake is None:
            return False
        return bool(self._guarded(self.intake, self._intake_outage, "taking the intake"))

    def _claim_safely(self, limit: int) -> list[ClaimedTask] | None:
        """Claim up to ``limit`` tasks; None if that failed (said once per outage)."""
        return self._guarded(
            lambda: self.queue.claim(self.id, limit), self._claim_outage, "claiming tasks"
        )

    @staticmethod
    def _guarded(call: Callable[[], T], outage: OutageNotice, what: str) -> T | None:
        """``call()``, or None if it failed: the database away is said once per outage
        (``outage``), anything else is logged with its traceback."""
        try:
            result = call()
        except Exception as exc:
            if not is_unavailable(exc):
                log.exception("%s failed", what)
                return None
            outage.failed(exc)
            return None
        outage.succeeded()
        return result

    def _drain(self, recorder: threading.Thread) -> None:
        self._hand_back(self._prefetch.close(), stopping=True)
        deadline = time.monotonic() + self.shutdown_grace
        while time.monotonic() < deadline:
            with self._lock:
                if not self._held:
                    break
            time.sleep(0.05)
        self._abandon_writes.set()
        with self._lock:
            left = list(self._held.values())
        if left:
            # Still running past the grace period: hand them back so another worker retries
            # now instead of waiting for the lease to run out.
            log.warning("releasing unfinished tasks", extra={"task_ids": [t.id for t in left]})
            try:
                self.queue.release(left, self.id)
            except Exception:  # their leases run out instead
                log.exception("releasing tasks failed")
        # Runners finishing after this record their outcome themselves (execute()).
        self._completions.close()
        recorder.join(timeout=2)

    def _hand_back(self, waiting: list[ClaimedTask], *, stopping: bool = False) -> None:
        """Prefetched tasks never started: back to the queue now, for any worker to take."""
        if not waiting:
            return
        try:
            self.queue.release(waiting, self.id)
        except Exception as exc:
            if is_unavailable(exc):
                # The claim loop says when the database is away; this adds nothing.
                log.debug("handing back prefetched tasks failed", exc_info=True)
            else:
                log.exception("handing back prefetched tasks failed")
            if not stopping:
                self._prefetch.put(waiting, more=False)  # still ours: run them here
                return
            # Stopping: their leases bring them back.
        else:
            if not stopping:
                log.info(
                    "handed back prefetched tasks that waited too long",
                    extra={"task_ids": [t.id for t in waiting]},
                )
        with self._lock:
            for task in waiting:
                self._held.pop(task.id, None)

    def _heartbeat(self) -> None:
        """Renew the leases of held tasks, and only those, while this process lives.

        After a failed renewal it tries again every second, so leases are renewed as soon as
        the database is back, before other workers may take the tasks over.
        """
        interval = max(self.queue.lease.total_seconds() / 3, 0.5)
        wait = interval
        outage = OutageNotice(log, "renewing leases failed", "renewing leases again")
        while not self._heartbeat_stop.wait(wait):
            with self._lock:
                ids = list(self._held)
            try:
                self.queue.extend(ids, self.id)
                wait = interval
                outage.succeeded()
            except Exception as exc:  # noqa: BLE001 - the loop must survive an outage
                outage.failed(exc)
                wait = min(1.0, interval)

    def _run_periodic(self) -> None:
        now = time.monotonic()
        for job in self.periodic:
            if now < self._next_periodic[job.name]:
                continue
            self._next_periodic[job.name] = now + job.interval
            try:
                job.run()
            except Exception:
                log.exception("periodic %s failed", job.name)

    @contextmanager
    def signals_handled(self) -> Iterator[None]:
        """SIGTERM/SIGINT set the stop event; the previous handlers come back afterwards."""

        def _stop(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping on %s", signal.Signals(signum).name)
            self.stop()

        previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
