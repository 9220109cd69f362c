"""Events out with every piece a real process: gunicorn, `genvault worker`, the sandbox,
moto's S3, a receiver verifying with the official ``standardwebhooks`` package, and
`genvault listen`."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.support.archive_checks import s3_client
from tests.support.receivers import start_receiver
from tests.support.s3 import free_port
from tests.support.stack import BIN, ROOT, TOKEN, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def _without_links(job: dict[str, Any]) -> dict[str, Any]:
    # Presigned links are made per request (their signature carries the time).
    return {**job, "assets": [{**a, "url": None} for a in job["assets"]]}


def _start_listen(
    stack: Stack,
) -> tuple[subprocess.Popen[str], threading.Thread, list[dict[str, Any]]]:
    env = {**stack.env, "GENVAULT_URL": stack.web_url, "GENVAULT_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [str(BIN / "genvault"), "listen", "--port", str(free_port()), "--json"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, Any]] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(json.loads(line))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return proc, thread, lines


def _wait(cond: Callable[[], bool], what: str, stack: Stack, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{stack.tail_logs()}")
        time.sleep(0.05)


@pytest.mark.damages_archive  # deletes an image to raise audit.failed
def test_events_reach_receivers_and_listen(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(
        GENVAULT_EVENTS_ALLOWED_NETWORKS="127.0.0.1/32",
        GENVAULT_EVENTS_RETRY_SCHEDULE="0.2,0.2",
        GENVAULT_EVENTS_TIMEOUT="4",
    )
    rx = start_receiver()
    # A receiver that never answers: at most 2 attempts (the per-endpoint bound) hold worker
    # slots, each for the 4 s timeout, and the others' deliveries must not wait behind them.
    stuck = start_receiver()
    stuck.hang = 60
    assert (
        requests.post(
            f"{stack.web_url}/v1/endpoints",
            json={"url": stuck.url},
            headers=stack.auth,
            timeout=10,
        ).status_code
        == 201
    )
    r = requests.post(
        f"{stack.web_url}/v1/endpoints", json={"url": rx.url}, headers=stack.auth, timeout=10
    )
    assert r.status_code == 201, r.text
    rx.secret = r.json()["secret"]
    listen, pump, printed = _start_listen(stack)
    _wait(lambda: len(_endpoints(stack)) == 3, "genvault listen to register", stack)
    try:
        job = stack.submit(
            "modelslab/text2img",
            {"model_id": "flux", "prompt": "a harbour", "width": 512, "height": 512},
        )
        done = stack.wait_status(job["id"], "archived", "failed")
        assert done["status"] == "archived", done
        _wait(lambda: len(rx.received) >= 2, "two events at the receiver", stack)
        got = {g.verified["type"]: g for g in rx.received if g.verified is not None}
        assert set(got) == {"job.submitted", "job.archived"}, [g.error for g in rx.received]
        data = got["job.archived"].verified["data"]
        assert _without_links({k: v for k, v in data.items() if k != "manifest_sha256"}) == (
            _without_links(stack.job(job["id"]))
        )
        assert all(a["url"] for a in data["assets"])
        manifest = (
            s3_client(stack)
            .get_object(Bucket=stack.bucket, Key=f"{stack.prefix}/{done['manifest_key']}")["Body"]
            .read()
        )
        assert data["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
        assert got["job.submitted"].verified["data"]["status"] in ("processing", "archiving")
        moved = datetime.fromisoformat(data["updated_at"]).timestamp()
        lag = got["job.archived"].wall - moved
        assert lag < 3.5, f"job.archived reached the receiver {lag:.1f} s after the transition"
        assert len(stuck.received) <= 2

        # An audit that finds a problem emits audit.failed.
        s3_client(stack).delete_object(
            Bucket=stack.bucket, Key=f"{stack.prefix}/{done['assets'][0]['key']}"
        )
        audit = requests.post(
            f"{stack.web_url}/v1/jobs/{job['id']}/audit", headers=stack.auth, timeout=30
        )
        assert audit.json()["ok"] is False
        _wait(lambda: len(rx.received) >= 3, "audit.failed at the receiver", stack)
        failed = rx.received[2].verified
        assert failed["type"] == "audit.failed"
        assert failed["data"]["job_id"] == job["id"]
        assert failed["data"]["findings"]["missing"] == [done["assets"][0]["key"]]

        # `genvault listen` printed the same events, verified.
        _wait(lambda: len(printed) >= 3, "genvault listen to print 3 events", stack)
        assert [p["type"] for p in printed] == ["job.submitted", "job.archived", "audit.failed"]
        assert printed[1]["id"] == got["job.archived"].headers["webhook-id"]
    finally:
        listen.send_signal(signal.SIGTERM)
        listen.wait(timeout=15)
        pump.join(timeout=5)  # it reads stdout until the process exits
        assert listen.stdout is not None and listen.stderr is not None
        errors = listen.stderr.read()
        listen.stdout.close()
        listen.stderr.close()
    assert listen.returncode == 0, errors
    assert "removed endpoint" in errors
    assert sorted(e["url"] for e in _endpoints(stack)) == sorted([rx.url, stuck.url])
    logs = stack.tail_logs(10_000)
    assert rx.secret.removeprefix("whsec_") not in logs


def _endpoints(stack: Stack) -> list[dict[str, Any]]:
    r = requests.get(f"{stack.web_url}/v1/endpoints", headers=stack.auth, timeout=10)
    r.raise_for_status()
    return r.json()["endpoints"]  # type: ignore[no-any-return]
