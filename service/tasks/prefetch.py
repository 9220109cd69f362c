"""The worker's local buffer: claimed tasks waiting for a free runner, and when to claim more.

Claiming only as many tasks as there are free runners costs a claim (a durable commit) for
every task or two once tasks are short, and bounds the queue's rate by the concurrency. So
the worker also holds a few tasks beyond its free runners, and a runner that finishes goes
straight to the next one while the claimer fetches the next batch.

How many beyond: as many as the runners start within ``window`` seconds at the pace tasks
have been keeping them busy. A prefetched task then waits about that long at most, and slow
kinds (an archive takes seconds) are not hoarded from other workers: for them the buffer
shrinks to nothing and the worker claims one free runner's worth at a time, as before.
While a task waits here it is held like a running one: the worker's heartbeat renews its
lease, and a crash leaves it to that lease like any other.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence

from service.tasks.queue import ClaimedTask

# Long enough for a few claims' worth of short tasks, short enough that waiting here adds
# little to a task's latency.
WINDOW_SECONDS = 0.25
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
        most: int = MOST,
    ) -> None:
        self.runners = runners
        self.window = window
        self.most = most
        self._on_room = on_room
        self._cond = threading.Condition()
        self._waiting: deque[ClaimedTask] = deque()
        self._busy = 0
        self._pace: float | None = None  # seconds a task keeps a runner, smoothed
        self._asked = False  # on_room was called since the claimer last looked
        self._closed = False

    def wanted(self) -> int:
        """How many tasks to claim now: none until the buffer has run half down."""
        with self._cond:
            self._asked = False
            return self._wanted()

    def put(self, tasks: Sequence[ClaimedTask]) -> None:
        if not tasks:
            return
        with self._cond:
            self._waiting.extend(tasks)
            self._cond.notify(len(tasks))

    def take(self) -> ClaimedTask | None:
        """The next task for a runner, waiting for one; None once closed."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            self._busy += 1
            task = self._waiting.popleft()
            call = self._room_opened()
        if call:
            self._on_room()
        return task

    def done(self, seconds: float) -> None:
        """A runner is free again after keeping a task for ``seconds``."""
        with self._cond:
            self._busy -= 1
            if self._pace is None:
                self._pace = seconds
            else:
                self._pace += _PACE_WEIGHT * (seconds - self._pace)
            call = self._room_opened()
        if call:
            self._on_room()

    def close(self) -> list[ClaimedTask]:
        """Stop handing out tasks (runners' take() returns None); the ones never started."""
        with self._cond:
            self._closed = True
            left = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        return left

    def _depth(self) -> int:
        if self._pace is None:
            return 0  # nothing known yet: no more than the free runners
        return min(self.most, int(self.runners * self.window / max(self._pace, 1e-6)))

    def _wanted(self) -> int:
        depth = self._depth()
        if len(self._waiting) > depth // 2:
            return 0
        return self.runners - self._busy + depth - len(self._waiting)

    def _room_opened(self) -> bool:
        # Once per claim: the claimer reads wanted() when woken, which re-arms this.
        if self._asked or self._closed or self._wanted() <= 0:
            return False
        self._asked = True
        return True
