"""submit → provider → callback → verified archive, with every piece a real process."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from service.security.tokens import webhook_token
from tests.support.archive_checks import SECRETS, content_keys, job_keys, verify_archive
from tests.support.db import create_pg_database, drop_pg_database
from tests.support.s3 import free_port
from tests.support.stack import SECRET, Stack

pytestmark = pytest.mark.e2e


def test_text2img_travels_the_whole_way(stack_factory: Callable[..., Stack]) -> None:
    metrics_port = free_port()
    stack = stack_factory(GENVAULT_WORKER_METRICS_PORT=str(metrics_port))
    job = stack.submit(
        "modelslab/text2img",
        {
            "model_id": "flux",
            "prompt": "a lighthouse at dusk",
            "width": "512",
            "height": 768,
            "samples": 2,
            "seed": 7,
        },
        metadata={"order": "o-1"},
    )
    done = stack.wait_status(job["id"], "archived", "failed")
    assert done["status"] == "archived", done
    assert done["provider_request_id"]
    manifest = verify_archive(stack, done)
    assert [(a["width"], a["height"]) for a in manifest["assets"]] == [(512, 768)] * 2
    assert manifest["metadata"] == {"order": "o-1"}
    assert manifest["request"]["params"]["prompt"] == "a lighthouse at dusk"
    logs = stack.tail_logs(10_000)
    for secret in SECRETS:
        assert secret not in logs
    assert "token=" not in logs.replace("token=[redacted]", "")
    # Both tiers count what they did: the web tier summed over gunicorn's processes.
    web_line = 'genvault_webhooks_total{outcome="accepted",provider="modelslab"} 1.0'
    assert web_line in _metrics_once_counted(f"{stack.web_url}/metrics", web_line)
    worker_url = f"http://127.0.0.1:{metrics_port}/metrics"
    worker = _metrics_once_counted(worker_url, 'genvault_assets_archived_total{role="output"}')
    assert 'genvault_tasks_total{kind="archive",outcome="done"} 1.0' in worker
    assert 'genvault_assets_archived_total{role="output"} 2.0' in worker


def _metrics_once_counted(url: str, line: str, timeout: float = 5.0) -> str:
    """The metrics text once ``line`` shows up (or at the timeout).

    A counter is incremented just after the work it counts is committed, so on a busy
    machine the job can read `archived` a moment before its counters do.
    """
    deadline = time.monotonic() + timeout
    while True:
        text = requests.get(url, timeout=10).text
        if line in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_duplicate_callbacks_give_exactly_one_set_of_objects(
    stack_factory: Callable[..., Stack],
) -> None:
    # The provider never calls back and the poll comes late, so this test plays the provider.
    stack = stack_factory(GENVAULT_POLL_GRACE_SECONDS="60")
    job = stack.submit(
        "modelslab/text2img",
        {
            "model_id": "flux",
            "prompt": "[sandbox:processing,eta=0.3,webhook-never] twin",
            "samples": 2,
        },
    )
    job = stack.wait(job["id"], lambda j: j["status"] == "processing" and j["provider_request_id"])
    time.sleep(0.5)
    result = requests.post(
        f"{stack.sandbox_url}/api/v6/images/fetch/{job['provider_request_id']}",
        json={"key": "x"},
        timeout=10,
    ).json()
    assert result["status"] == "success"
    body = json.dumps({**result, "track_id": job["track_id"]}).encode()
    token = webhook_token(SECRET.encode(), "modelslab", job["track_id"])
    url = f"{stack.web_url}/webhooks/modelslab/{job['track_id']}?token={token}"

    def send(_: int) -> tuple[int, str]:
        r = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
        return r.status_code, r.json()["status"]

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))
    answers += [send(i) for i in range(4)]
    assert [code for code, _ in answers] == [200] * 10
    assert sorted(outcome for _, outcome in answers) == ["accepted"] + ["duplicate"] * 9
    done = stack.wait_status(job["id"], "archived", "failed")
    assert done["status"] == "archived", done
    verify_archive(stack, done)
    # Replays after archiving change nothing either.
    keys = job_keys(stack, job["id"])
    assert [send(i)[0] for i in range(3)] == [200] * 3
    time.sleep(1)
    # Two images, their two thumbnails, the manifest and its signature.
    assert job_keys(stack, job["id"]) == keys and len(content_keys(stack, job["id"])) == 6
    assert stack.job(job["id"])["status"] == "archived"


@pytest.mark.postgres
def test_several_workers_share_one_postgresql(stack_factory: Callable[..., Stack]) -> None:
    url = create_pg_database()
    try:
        stack = stack_factory(database_url=url, workers=2)
        jobs = [
            stack.submit(
                "modelslab/text2img", {"model_id": "flux", "prompt": f"tile {i}", "samples": 2}
            )
            for i in range(6)
        ]
        for job in jobs:
            done = stack.wait_status(job["id"], "archived", "failed")
            assert done["status"] == "archived", done
            verify_archive(stack, done)
        stack.stop()
    finally:
        drop_pg_database(url)


def test_a_worker_killed_mid_flight_loses_nothing(stack_factory: Callable[..., Stack]) -> None:
    # A submission the worker committed as attempted but may not have sent when it died is
    # "uncertain": by default it waits out a grace period and then fails rather than risk
    # paying twice (tests/e2e/test_outage.py checks that). Here the point is that nothing is
    # lost, so such a job is resubmitted after a short grace.
    stack = stack_factory(
        GENVAULT_WORKER_LEASE_SECONDS="2",
        GENVAULT_WORKER_CONCURRENCY="2",
        GENVAULT_SUBMIT_UNCERTAIN_GRACE_SECONDS="3",
        GENVAULT_RESUBMIT_UNCERTAIN="true",
    )
    jobs = [
        stack.submit(
            "modelslab/text2img",
            {
                "model_id": "flux",
                "prompt": f"crash {i}",
                "samples": 4,
                "width": 1024,
                "height": 1024,
            },
        )
        for i in range(4)
    ]
    stack.wait(jobs[0]["id"], lambda j: j["status"] in ("processing", "archiving", "archived"))
    victim = next(p for p in stack.procs if "worker" in " ".join(map(str, p.args)))
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    unfinished = [j for j in jobs if stack.job(j["id"])["status"] != "archived"]
    assert unfinished, "the worker finished everything before it was killed: nothing was tested"
    stack.start_worker("worker-after-crash")
    for job in jobs:
        done = stack.wait_status(job["id"], "archived", "failed", timeout=90)
        assert done["status"] == "archived", done
        verify_archive(stack, done)
