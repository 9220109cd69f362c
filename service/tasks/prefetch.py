"""The worker's local buffer: claimed tasks waiting for a free runner, and when to claim more.

Claiming only as many tasks as there are free runners costs a claim (a durable commit) for
every task or two once tasks are short, and bounds the queue's rate by the concurrency. So
the worker also holds a few tasks beyond its free runners, and a runner that finishes goes
straight to the next one while the claimer fetches the next batch.

How many beyond: as many as the runners start within ``window`` seconds at the pace tasks
have been keeping them busy (and no faster than the tasks running now allow). A prefetched
task then waits about that long, and slow kinds (an archive takes seconds) are not hoarded
from other workers: for them the buffer shrinks to nothing and the worker claims one free
runner's worth at a time, as before. When the pace was wrong (slow tasks came right after
fast ones) and a task has waited ``hand_back_after`` seconds, the tasks beyond what the
runners will soon start go back to the queue, for other workers.

While a task waits here it is held like a running one: the worker's heartbeat renews its
lease, and a crash leaves it to that lease like any other.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from service.tasks.queue import ClaimedTask

# Long enough for a few claims' worth of short tasks, short enough that waiting here adds
# little to a task's latency.
WINDOW_SECONDS = 0.25
HAND_BACK_AFTER_SECONDS = 2.0
# A claim's size stays moderate however short the tasks are (one statement, one commit).
MOST = 256
# How fast the pace follows a change: the weight of the newest task's time.
_PACE_WEIGHT = 0.1


class Prefetch:
    def __init__(
        self,
        runners: int,
        *,
        on_room: Callable[[], None],
        window: float = WINDOW_SECONDS,
        hand_back_after: float = HAND_BACK_AFTER_SECONDS,
        most: int = MOST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runners = runners
        # Injectable so the pace rules are tested without sleeping (and without a loaded
        # machine's scheduling deciding what "a short task" was).
        self._clock = clock
        self.window = window
        self.hand_back_after = hand_back_after
        self.most = most
        self._on_room = on_room
        self._cond = threading.Condition()
        self._waiting: deque[tuple[ClaimedTask, float]] = deque()  # with when it came
        self._started: dict[int, float] = {}  # task id → when a runner took it
        self._pace: float | None = None  # seconds a task keeps a runner, smoothed
        self._asked = False  # on_room was called since the claimer last looked
        # The last claim took all it asked for, so more may be due. When it did not, new
        # work comes with a wake-up (or the poll), and room alone is no reason to claim.
        self._more = False
        self._closed = False

    def wanted(self) -> int:
        """How many tasks to claim now: none until the buffer has run half down."""
        with self._cond:
            self._asked = False
            return self._wanted(self._clock())

    def put(self, tasks: Sequence[ClaimedTask], *, more: bool) -> None:
        """Tasks just claimed; ``more``: the claim got all it asked for."""
        now = self._clock()
        with self._cond:
            self._more = more
            self._waiting.extend((task, now) for task in tasks)
            self._cond.notify(len(tasks))

    def take(self) -> ClaimedTask | None:
        """The next task for a runner, waiting for one; None once closed."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            task, _ = self._waiting.popleft()
            now = self._clock()
            self._started[task.id] = now
            call = self._room_opened(now)
        if call:
            self._on_room()
        return task

    def done(self, task: ClaimedTask) -> None:
        """The runner that took ``task`` is free again."""
        now = self._clock()
        with self._cond:
            seconds = now - self._started.pop(task.id)
            if self._pace is None:
                self._pace = seconds
            else:
                self._pace += _PACE_WEIGHT * (seconds - self._pace)
            call = self._room_opened(now)
        if call:
            self._on_room()

    def overdue(self) -> list[ClaimedTask]:
        """Once a task has waited ``hand_back_after``: those beyond what the runners will
        soon start, taken out for the caller to give back to the queue."""
        now = self._clock()
        with self._cond:
            if not self._waiting or now - self._waiting[0][1] < self.hand_back_after:
                return []
            keep = self._depth(now)
            extra = []
            while len(self._waiting) > keep:
                extra.append(self._waiting.pop()[0])
        extra.reverse()
        return extra

    def close(self) -> list[ClaimedTask]:
        """Stop handing out tasks (runners' take() returns None); the ones never started."""
        with self._cond:
            self._closed = True
            left = [task for task, _ in self._waiting]
            self._waiting.clear()
            self._cond.notify_all()
        return left

    def _depth(self, now: float) -> int:
        pace = self._pace
        if len(self._started) >= self.runners:
            # Every runner is busy: a pace faster than the tasks now running have taken so
            # far is not to be trusted (slow tasks came after fast ones).
            running = now - max(self._started.values())
            pace = running if pace is None else max(pace, running)
        if pace is None:
            return 0  # nothing known yet: no more than the free runners
        return min(self.most, int(self.runners * self.window / max(pace, 1e-6)))

    def _wanted(self, now: float) -> int:
        depth = self._depth(now)
        if len(self._waiting) > depth // 2:
            return 0
        return self.runners - len(self._started) + depth - len(self._waiting)

    def _room_opened(self, now: float) -> bool:
        # Once per claim: the claimer reads wanted() when woken, which re-arms this.
        if not self._more or self._asked or self._closed or self._wanted(now) <= 0:
            return False
        self._asked = True
        return True
