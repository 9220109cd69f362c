"""The worker's prefetch buffer: how much to claim ahead, and what to give back."""

from __future__ import annotations

from service.tasks.kinds import TaskKind
from service.tasks.prefetch import Prefetch
from service.tasks.queue import ClaimedTask


def _tasks(first: int, n: int) -> list[ClaimedTask]:
    return [ClaimedTask(i, TaskKind.SUBMIT, None, 1, 3) for i in range(first, first + n)]


class Clock:
    """A monotonic clock the test moves by hand: task times are exact, whatever the load."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _run_one(prefetch: Prefetch, seconds: float, clock: Clock) -> None:
    task = prefetch.take()
    assert task is not None
    clock.sleep(seconds)
    prefetch.done(task)


def test_short_tasks_are_claimed_ahead_up_to_the_cap_and_refilled_at_half() -> None:
    woken: list[bool] = []
    clock = Clock()
    prefetch = Prefetch(2, on_room=lambda: woken.append(True), window=0.25, most=40, clock=clock)
    assert prefetch.wanted() == 2, "nothing known yet: one per free runner"
    prefetch.put(_tasks(0, 2), more=True)
    _run_one(prefetch, 0.0, clock)
    _run_one(prefetch, 0.0, clock)
    # Tasks this short: the cap's worth beyond the two free runners.
    assert woken == [True], "room for more after the first task"
    assert prefetch.wanted() == 2 + 40
    woken.clear()
    prefetch.put(_tasks(2, 42), more=True)
    assert prefetch.wanted() == 0, "the buffer is full"
    for _ in range(21):
        _run_one(prefetch, 0.0, clock)
    assert prefetch.wanted() == 0, "not yet half down"
    assert woken == [], "no room yet"
    _run_one(prefetch, 0.0, clock)
    assert woken == [True], "half down: the claimer is woken, once"
    assert prefetch.wanted() == 2 + 40 - 20


def test_slow_tasks_are_not_claimed_ahead() -> None:
    clock = Clock()
    prefetch = Prefetch(2, on_room=lambda: None, window=0.02, most=40, clock=clock)
    prefetch.put(_tasks(0, 2), more=True)
    _run_one(prefetch, 0.06, clock)
    _run_one(prefetch, 0.06, clock)
    # Two runners start under one such task in the window: none ahead of the free runners.
    assert prefetch.wanted() == 2


def test_a_drained_queue_wakes_nobody_when_a_runner_frees_up() -> None:
    woken: list[bool] = []
    clock = Clock()
    prefetch = Prefetch(2, on_room=lambda: woken.append(True), clock=clock)
    prefetch.put(_tasks(0, 1), more=False)  # asked for 2, got 1: nothing more is due
    _run_one(prefetch, 0.0, clock)
    assert woken == []


def test_tasks_that_waited_too_long_behind_slow_ones_are_given_back() -> None:
    clock = Clock()
    prefetch = Prefetch(
        1, on_room=lambda: None, window=0.25, hand_back_after=0.5, most=40, clock=clock
    )
    prefetch.put(_tasks(0, 1), more=True)
    _run_one(prefetch, 0.0, clock)  # a fast first task: the pace says claim far ahead
    prefetch.put(_tasks(1, 10), more=True)
    slow = prefetch.take()  # ... and then one that does not end
    assert slow is not None and slow.id == 1
    assert prefetch.overdue() == [], "not waited long enough yet"
    clock.sleep(0.6)
    # The running task has taken longer than the window: nothing is kept beyond it.
    assert [t.id for t in prefetch.overdue()] == list(range(2, 11))
    assert prefetch.close() == []
    assert prefetch.take() is None
