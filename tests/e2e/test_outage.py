"""Faults through real processes: the database restarted and stopped mid-burst, a worker
killed between the provider call and the commit (S3 cut and hung: test_outage_s3.py, a file
of its own so that the two longest groups of scenarios run side by side).

Each scenario ends with the invariant of tests.support.faults (every job archived, exactly
one manifest and its outputs, nothing else in the bucket, the audit clean, one paid
generation per job) and reports the time from the fault's end to all archived. Settings are
the defaults except where a test says why.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, text

from service.security.tokens import webhook_token
from tests.support.faults import (
    TEXT2IMG,
    Burst,
    assert_invariant,
    report,
    submissions,
    wait_all_final,
)
from tests.support.pgcluster import PgCluster
from tests.support.stack import SECRET, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

# Per scenario: enough to catch jobs in every state, small enough for 2 cores. The issue's
# full scenarios run on demand: GENVAULT_FAULT_JOBS=100 GENVAULT_FAULT_S3_SECONDS=30.
JOBS = int(os.environ.get("GENVAULT_FAULT_JOBS", "16"))
DB_OUTAGE = 20.0
S3_OUTAGE = float(os.environ.get("GENVAULT_FAULT_S3_SECONDS", "10"))
# The defaults the stack fixture tunes down for speed; fault figures are for the defaults.
DEFAULTS = {
    "GENVAULT_WORKER_POLL_INTERVAL": "1",
    "GENVAULT_POLL_GRACE_SECONDS": "10",
    "GENVAULT_RETRY_BASE_SECONDS": "2",
    "GENVAULT_RECONCILE_INTERVAL_SECONDS": "60",
}


def mid_burst(stack: Stack, count: int = JOBS) -> Burst:
    """Start a burst and return once about half of it is in."""
    burst = Burst(stack, count)
    burst.start()
    deadline = time.monotonic() + 30
    while len(burst.jobs) < count // 2 and not burst.errors:
        assert time.monotonic() < deadline, stack.tail_logs()
        time.sleep(0.05)
    return burst


def assert_unavailable_is_503(stack: Stack) -> None:
    """While the database is away: /readyz says so, the API and the webhook answer 503."""
    ready = requests.get(f"{stack.web_url}/readyz", timeout=15)
    assert ready.status_code == 503 and "Retry-After" in ready.headers
    assert ready.json()["checks"]["database"] == "unavailable"
    listing = requests.get(f"{stack.web_url}/v1/jobs", headers=stack.auth, timeout=15)
    assert listing.status_code == 503, listing.text
    assert listing.json()["error"]["code"] == "unavailable"
    # A provider that retries its webhooks must be told to: 503, not 500 (nor 404).
    track_id = "f" * 32
    token = webhook_token(SECRET.encode(), "modelslab", track_id)
    hook = requests.post(
        f"{stack.web_url}/webhooks/modelslab/{track_id}?token={token}",
        json={"status": "success", "id": 1, "output": []},
        timeout=15,
    )
    assert hook.status_code == 503 and "Retry-After" in hook.headers
    assert hook.json()["error"]["code"] == "unavailable"


@pytest.fixture
def pg_stack(
    pg_cluster: PgCluster, stack_factory: Callable[..., Stack]
) -> Iterator[Callable[..., Stack]]:
    def make(**env: str) -> Stack:
        return stack_factory(pg_cluster.create_database(), **{**DEFAULTS, **env})

    yield make
    if not pg_cluster.running():
        pg_cluster.start()  # a failed test must not leave the next one without a server


@pytest.mark.timeout(150)
def test_postgres_restart_mid_burst(pg_cluster: PgCluster, pg_stack: Callable[..., Stack]) -> None:
    stack = pg_stack()
    burst = mid_burst(stack)
    began = time.monotonic()
    pg_cluster.restart()
    ended = time.monotonic()
    jobs = burst.finish()
    recovered = wait_all_final(stack, jobs, timeout=60) - ended
    assert_invariant(stack, jobs)
    report("PostgreSQL restart -m fast", len(jobs), ended - began, recovered)
    assert recovered <= 30, recovered


@pytest.mark.timeout(180)
def test_postgres_stopped_for_20_s_mid_burst(
    pg_cluster: PgCluster, pg_stack: Callable[..., Stack]
) -> None:
    stack = pg_stack()
    burst = mid_burst(stack)
    pg_cluster.stop("fast")
    began = time.monotonic()
    time.sleep(2)  # let every process notice
    assert_unavailable_is_503(stack)
    time.sleep(max(0.0, DB_OUTAGE - (time.monotonic() - began)))
    pg_cluster.start()
    ended = time.monotonic()
    jobs = burst.finish()
    assert burst.unavailable > 0, "the burst never met the outage"
    recovered = wait_all_final(stack, jobs, timeout=90) - ended
    assert_invariant(stack, jobs)
    report("PostgreSQL stopped", len(jobs), ended - began, recovered)
    # The bound: an outage of N seconds is over N + 30 s after it began.
    assert recovered <= 30, recovered


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
