"""Faults through real processes: a worker killed between the provider call and the commit.

The invariant and defaults are those of test_outage.py; a file of its own so that the suite's
workers run these scenarios beside the database ones.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support.faults import (
    TEXT2IMG,
    assert_invariant,
    report,
    submissions,
    wait_all_final,
)
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


class _HeldCallbacks:
    """A transaction holding the callbacks table: a submit task that has called the provider
    then blocks writing its answer, so the test can kill the worker exactly there."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.conn = self.engine.connect()
        self.conn.execute(text("LOCK TABLE callbacks IN EXCLUSIVE MODE"))

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()
        self.engine.dispose()


def kill_between_call_and_commit(stack: Stack, prompt: str, count: int) -> list[dict[str, Any]]:
    """Submit ``count`` jobs, let the worker call the provider for each, kill it before it can
    commit the answers, then start a fresh worker."""
    held = _HeldCallbacks(stack.env["GENVAULT_DATABASE_URL"])
    try:
        jobs = [
            stack.submit(TEXT2IMG, {"model_id": "flux", "prompt": f"{prompt} {i}", "samples": 2})
            for i in range(count)
        ]
        deadline = time.monotonic() + 30
        while sum(submissions(stack).get(j["track_id"], 0) for j in jobs) < count:
            assert time.monotonic() < deadline, stack.tail_logs()
            time.sleep(0.05)
        time.sleep(1.0)  # the answers are back; the writes wait on the lock
        worker = stack.procs[-1]
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        held.release()
    stack.start_worker("worker-after")
    return jobs


@pytest.mark.timeout(120)
def test_worker_killed_between_provider_call_and_commit(
    pg_stack: Callable[..., Stack],
) -> None:
    count = 6
    stack = pg_stack(GENVAULT_WORKER_CONCURRENCY=str(count))
    jobs = kill_between_call_and_commit(stack, "killed", count)
    ended = time.monotonic()
    # The webhooks (they carry our track_id) settle the jobs; nothing is submitted again.
    recovered = wait_all_final(stack, jobs, timeout=60) - ended
    assert_invariant(stack, jobs)
    report("worker SIGKILLed between provider call and commit", count, 0.0, recovered)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("resubmit", [False, True])
def test_an_unanswered_submission_without_webhook(
    resubmit: bool, pg_stack: Callable[..., Stack]
) -> None:
    count = 3
    stack = pg_stack(
        GENVAULT_WORKER_CONCURRENCY=str(count),
        # Short, so the test does not wait minutes: the lease, and the grace for the webhook.
        GENVAULT_WORKER_LEASE_SECONDS="4",
        GENVAULT_SUBMIT_UNCERTAIN_GRACE_SECONDS="3",
        GENVAULT_RESUBMIT_UNCERTAIN=str(resubmit).lower(),
    )
    jobs = kill_between_call_and_commit(stack, "lost [sandbox:webhook-never]", count)
    wait_all_final(stack, jobs, timeout=60)
    paid = submissions(stack)
    for job in jobs:
        done = stack.job(job["id"])
        if resubmit:
            assert done["status"] == "archived", done
            assert paid[job["track_id"]] == 2
        else:
            assert done["status"] == "failed", done
            assert done["error"]["code"] == "submission_uncertain"
            assert "no answer was recorded" in done["error"]["message"]
            assert paid[job["track_id"]] == 1
