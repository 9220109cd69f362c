"""Issue 9's promise of the fast path: a callback answered 200 survives a crash of every
process right after, with real processes (gunicorn with the shipped config) and SIGKILL.

The web tier is killed while webhooks are still arriving. Every callback that got its
200 must then be in the database with the task that applies it, and a worker started
afterwards must apply each one.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import select

from service.db.models import Callback, Job
from service.db.session import make_engine
from service.jobs.records import new_job_id
from service.security.tokens import webhook_token
from tests.support.stack import SECRET, Stack

pytestmark = pytest.mark.e2e

JOBS = 160  # enough that the kill lands while requests are in flight
SENDERS = 8
KILL_AFTER = 60  # accepted answers before every process is killed


def _processing_jobs(url: str, n: int) -> dict[str, str]:
    """``n`` jobs waiting for their webhook, inserted directly: track_id → job id."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    jobs = {uuid.uuid4().hex: new_job_id() for _ in range(n)}
    with engine.begin() as conn:
        conn.execute(
            Job.__table__.insert(),
            [
                {
                    "id": job_id,
                    "track_id": track_id,
                    "endpoint": "modelslab/text2img",
                    "status": "processing",
                    "params": {"model_id": "m", "prompt": "p"},
                    "metadata": {},
                    "submit_attempts": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for track_id, job_id in jobs.items()
            ],
        )
    engine.dispose()
    return jobs


def _send(stack: Stack, track_ids: list[str], accepted: list[str], stop: threading.Event) -> None:
    with requests.Session() as session:
        for track_id in track_ids:
            if stop.is_set():
                return
            token = webhook_token(SECRET.encode(), "modelslab", track_id)
            body = {
                "status": "success",
                "id": 1,
                "track_id": track_id,
                "output": [f"{stack.sandbox_url}/nothing/{track_id}.png"],
            }
            try:
                r = session.post(
                    f"{stack.web_url}/webhooks/modelslab/{track_id}?token={token}",
                    data=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                    timeout=10,
                )
            except requests.RequestException:
                return  # the web tier is gone: what it answered before is what counts
            if r.status_code == 200 and r.json() == {"status": "accepted"}:
                accepted.append(track_id)


def test_a_callback_answered_200_survives_killing_every_process_right_after(
    stack_factory: Callable[..., Stack], database_url: str
) -> None:
    stack = stack_factory(database_url=database_url, workers=0)
    url = database_url
    jobs = _processing_jobs(url, JOBS)
    accepted: list[str] = []
    stop = threading.Event()
    track_ids = list(jobs)
    senders = [
        threading.Thread(target=_send, args=(stack, track_ids[i::SENDERS], accepted, stop))
        for i in range(SENDERS)
    ]
    for t in senders:
        t.start()
    deadline = threading.Event()
    while len(accepted) < KILL_AFTER and any(t.is_alive() for t in senders):
        deadline.wait(0.005)
    # Every process at once, no shutdown: the web tier (gunicorn's master and its workers
    # share a process group) and the sandbox.
    for proc in stack.procs:
        os.killpg(proc.pid, signal.SIGKILL)
    for proc in stack.procs:
        proc.wait()
    stop.set()
    for t in senders:
        t.join(timeout=15)
    answered = set(accepted)
    assert len(answered) >= KILL_AFTER
    assert len(answered) < JOBS, "every webhook was answered before the kill: nothing was tested"

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            # Stored, and pending: waiting for a worker to apply it.
            stored = set(
                conn.execute(
                    select(Callback.job_id).where(Callback.source == "webhook", Callback.pending)
                ).scalars()
            )
        lost = {t for t in answered if jobs[t] not in stored}
        assert not lost, f"{len(lost)} of {len(answered)} callbacks answered 200 were lost"

        # A worker started afterwards applies every one of them.
        worker = stack.start_worker("worker-after-crash")
        wanted = {jobs[t] for t in answered}

        def applied() -> set[str]:
            with engine.connect() as conn:
                done = conn.execute(
                    select(Callback.job_id).where(
                        Callback.source == "webhook", Callback.pending.is_(False)
                    )
                ).scalars()
                return wanted & set(done)

        stopped = threading.Event()
        for _ in range(600):
            if applied() == wanted or worker.poll() is not None:
                break
            stopped.wait(0.1)
        assert applied() == wanted, stack.tail_logs()
        with engine.connect() as conn:
            statuses = dict(
                conn.execute(select(Job.id, Job.status).where(Job.id.in_(wanted))).all()
            )
        assert "processing" not in statuses.values(), "a callback was applied to no effect"
    finally:
        engine.dispose()
