"""Faults through real processes: the database restarted and stopped mid-burst (a worker
killed between the provider call and the commit: test_outage_worker.py; S3 cut and hung:
test_outage_s3.py; files of their own so that the suite's workers run the longest groups of
scenarios side by side).

Each scenario ends with the invariant of tests.support.faults (every job archived, exactly
one manifest and its outputs, nothing else in the bucket, the audit clean, one paid
generation per job) and reports the time from the fault's end to all archived. Settings are
the defaults except where a test says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from service.security.tokens import webhook_token
from tests.support.faults import assert_invariant, mid_burst, report, wait_all_final
from tests.support.pgcluster import PgCluster
from tests.support.stack import SECRET, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

DB_OUTAGE = 20.0


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
