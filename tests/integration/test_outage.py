"""Surviving the database going away, in process: outcomes kept until written, 503 with
Retry-After, never a second paid submission, and no job left without a task."""

from __future__ import annotations

import logging
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from service.app import create_app
from service.db.availability import is_unavailable
from service.db.migrate import upgrade
from service.db.models import Job, Task
from service.db.session import Database, make_engine
from service.db.types import utcnow
from service.jobs.polling import Reconciler
from service.jobs.results import PollTiming
from service.jobs.states import JobStatus
from service.jobs.submission import Submitter
from service.jobs.uncertain import UncertainSubmissions, Verdict
from service.providers.base import (
    ProviderError,
    ProviderResult,
    ProviderUnreachable,
    ResultStatus,
)
from service.providers.transport import post_json
from service.security.tokens import webhook_token
from service.tasks.kinds import TaskKind
from service.tasks.outcomes import Reschedule
from service.tasks.queue import ClaimedTask, TaskQueue
from service.tasks.retry_policy import RetryPolicy
from service.tasks.status import TaskStatus
from service.tasks.worker import Worker
from service.wiring import build
from tests.support.app import AUTH, SECRET, make_settings
from tests.support.db import create_pg_database, drop_pg_database
from tests.support.s3 import free_port
from tests.support.tcpproxy import TcpProxy

TIMING = PollTiming(grace_seconds=1, max_attempts=5)


def _outage() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


class FlakyQueue(TaskQueue):
    """The real queue, whose outcome writes fail while ``down`` is set, as in an outage."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, lease_seconds=30, default_max_attempts=3)
        self.down = threading.Event()
        self.failed_writes = 0

    def _finish(self, task: ClaimedTask, worker_id: str, **values: Any) -> bool:
        if self.down.is_set():
            self.failed_writes += 1
            raise _outage()
        return super()._finish(task, worker_id, **values)

    def complete_many(self, tasks: Sequence[ClaimedTask], worker_id: str) -> set[int]:
        # Completions are group-committed through this one statement (tasks/completions.py).
        if self.down.is_set():
            self.failed_writes += 1
            raise _outage()
        return super().complete_many(tasks, worker_id)


def _job(db: Database, status: JobStatus = JobStatus.QUEUED, **values: Any) -> str:
    job_id = f"job{time.monotonic_ns()}"
    with db.transaction() as s:
        s.add(
            Job(
                id=job_id,
                track_id=f"t-{job_id}",
                endpoint="modelslab/text2img",
                status=status,
                params={"model_id": "flux", "prompt": "p"},
                meta={},
                **values,
            )
        )
    return job_id


def _task(db: Database, job_id: str, kind: TaskKind) -> Task | None:
    with db.transaction() as s:
        return s.execute(
            select(Task).where(Task.job_id == job_id, Task.kind == kind.value)
        ).scalar_one_or_none()


def test_an_outcome_is_kept_with_its_lease_until_the_database_takes_it(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    queue = FlakyQueue(db)
    job_id = _job(db)
    with db.transaction() as s:
        queue.enqueue(s, TaskKind.ARCHIVE, job_id=job_id)
    worker = Worker(queue, {TaskKind.ARCHIVE: lambda t: None}, on_give_up=lambda t, e: None,
                    policy=RetryPolicy())  # fmt: skip
    [task] = queue.claim(worker.id, 1)
    worker._held[task.id] = task
    queue.down.set()
    caplog.set_level(logging.INFO)
    thread = threading.Thread(target=worker.execute, args=(task,))
    thread.start()
    deadline = time.monotonic() + 5
    while queue.failed_writes < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    # Still held: the heartbeat keeps its lease, and nothing claims it from us.
    assert worker.in_flight == 1
    assert "task done" not in caplog.messages
    queue.extend([task.id], worker.id)
    queue.down.clear()
    thread.join(10)
    assert not thread.is_alive()
    assert worker.in_flight == 0
    row = _task(db, job_id, TaskKind.ARCHIVE)
    assert row is not None and row.status is TaskStatus.DONE
    assert caplog.messages.count("task done") == 1


def test_a_handler_failing_on_the_database_retries_and_never_fails_the_job(
    db: Database,
) -> None:
    queue = TaskQueue(db, lease_seconds=30, default_max_attempts=2)
    job_id = _job(db)
    with db.transaction() as s:
        queue.enqueue(s, TaskKind.ARCHIVE, job_id=job_id, max_attempts=2)
    gave_up: list[BaseException] = []

    def handler(task: ClaimedTask) -> None:
        raise _outage()

    worker = Worker(queue, {TaskKind.ARCHIVE: handler}, on_give_up=lambda t, e: gave_up.append(e),
                    policy=RetryPolicy(max_attempts=2, base_seconds=0.01))  # fmt: skip
    for _ in range(3):
        time.sleep(0.05)
        worker.run_once()
    assert gave_up == []
    row = _task(db, job_id, TaskKind.ARCHIVE)
    # Three runs, none counted: the database's failures do not use up the task's attempts.
    assert row is not None and row.status is TaskStatus.QUEUED and row.attempts == 0


@pytest.fixture
def down_client(tmp_path: Path) -> Iterator[FlaskClient]:
    """An app whose PostgreSQL does not answer (nothing listens on the port)."""
    url = f"postgresql+psycopg://genvault@127.0.0.1:{free_port()}/genvault"
    container = build(make_settings(url, tmp_path))
    try:
        yield create_app(container=container).test_client()
    finally:
        container.close()


def test_while_the_database_is_unreachable_the_web_tier_answers_503(
    down_client: FlaskClient,
) -> None:
    for response in (
        down_client.get("/v1/jobs", headers=AUTH),
        down_client.post(
            "/v1/jobs",
            json={"endpoint": "modelslab/text2img", "params": {"model_id": "f", "prompt": "p"}},
            headers=AUTH,
        ),
        down_client.post(
            f"/webhooks/modelslab/abc?token={webhook_token(SECRET.encode(), 'modelslab', 'abc')}",
            json={"status": "success", "id": 1, "output": []},
        ),
    ):
        assert response.status_code == 503, response.get_json()
        assert int(response.headers["Retry-After"]) > 0
        assert response.get_json()["error"]["code"] == "unavailable"
    ready = down_client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"]
    assert ready.get_json()["checks"]["database"] == "unavailable"
    assert down_client.get("/healthz").status_code == 200


class CountingProvider:
    """A provider at the vendor border: answers success and counts what it was sent."""

    name = "modelslab"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def submit(
        self, endpoint: str, params: Mapping[str, Any], *, webhook_url: str | None, track_id: str
    ) -> ProviderResult:
        self.calls.append(track_id)
        return ProviderResult(ResultStatus.PROCESSING, request_id="81000001", eta_seconds=5)

    def fetch(self, endpoint: str, request_id: str | None, fetch_url: str | None) -> ProviderResult:
        raise AssertionError("not polled here")

    def parse_callback(self, body: Mapping[str, Any]) -> ProviderResult:
        raise AssertionError("no webhooks here")


def _submitter(db: Database, provider: CountingProvider, *, grace: float, resubmit: bool) -> Any:
    queue = TaskQueue(db, lease_seconds=30, default_max_attempts=5)
    policy = UncertainSubmissions(grace, resubmit)
    return Submitter(db, queue, {"modelslab": provider}, "http://127.0.0.1:9", b"s", TIMING,
                     lambda job: dict(job.params), policy)  # fmt: skip


def _submit_task(job_id: str) -> ClaimedTask:
    return ClaimedTask(1, TaskKind.SUBMIT, job_id, 1, 5)


def test_the_attempt_is_on_record_before_the_provider_is_called(db: Database) -> None:
    provider = CountingProvider()
    seen: list[Any] = []

    class Peeking(CountingProvider):
        def submit(self, endpoint: str, params: Mapping[str, Any], **kw: Any) -> ProviderResult:
            with db.transaction() as s:
                job = s.get(Job, job_id)
                assert job is not None
                seen.append((job.status, job.submit_attempted_at, job.submit_attempts))
            return provider.submit(endpoint, params, **kw)

    job_id = _job(db)
    assert _submitter(db, Peeking(), grace=60, resubmit=False)(_submit_task(job_id)) is None
    [(status, attempted_at, attempts)] = seen
    assert status is JobStatus.SUBMITTED and attempted_at is not None and attempts == 1
    with db.transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        assert job.status is JobStatus.PROCESSING and job.submit_attempted_at is None
    assert provider.calls == [f"t-{job_id}"]


@pytest.mark.parametrize("resubmit", [False, True])
def test_an_attempt_without_answer_waits_then_fails_or_resubmits(
    db: Database, resubmit: bool
) -> None:
    provider = CountingProvider()
    attempted = utcnow() - timedelta(seconds=5)
    job_id = _job(db, JobStatus.SUBMITTED, submit_attempted_at=attempted, submit_attempts=1)

    waiting = _submitter(db, provider, grace=60, resubmit=resubmit)(_submit_task(job_id))
    assert isinstance(waiting, Reschedule) and 1 <= waiting.delay <= 55
    assert provider.calls == []

    assert _submitter(db, provider, grace=2, resubmit=resubmit)(_submit_task(job_id)) is None
    with db.transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        if resubmit:
            assert provider.calls == [f"t-{job_id}"]
            assert job.status is JobStatus.PROCESSING and job.submit_attempts == 2
        else:
            assert provider.calls == []
            assert job.status is JobStatus.FAILED
            assert job.error_code == "submission_uncertain"
            assert "no answer was recorded" in (job.error_message or "")


def test_the_uncertainty_policy() -> None:
    now = utcnow()
    policy = UncertainSubmissions(grace_seconds=100, resubmit=False)
    verdict, delay = policy.decide(now - timedelta(seconds=10), now)
    assert verdict is Verdict.WAIT and delay == 25
    assert policy.decide(now - timedelta(seconds=100), now)[0] is Verdict.FAIL
    assert UncertainSubmissions(0, True).decide(now, now)[0] is Verdict.RESUBMIT


def test_a_refused_connection_is_certain_and_a_silent_server_is_not() -> None:
    session = requests.Session()
    with pytest.raises(ProviderError) as refused:
        post_json(session, f"http://127.0.0.1:{free_port()}/x", {}, headers={}, timeout=2,
                  provider="p", what="submit")  # fmt: skip
    assert not isinstance(refused.value, ProviderUnreachable)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts into the backlog and never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x"
        with pytest.raises(ProviderUnreachable):
            post_json(session, url, {}, headers={}, timeout=0.5, provider="p", what="submit")
    session.close()


def test_the_reconciler_gives_every_orphaned_job_its_task_back(db: Database) -> None:
    queue = TaskQueue(db, lease_seconds=30, default_max_attempts=5)
    old = utcnow() - timedelta(seconds=120)
    orphans = {
        _job(db, JobStatus.QUEUED, updated_at=old): TaskKind.SUBMIT,
        _job(db, JobStatus.SUBMITTED, updated_at=old, submitted_at=old): TaskKind.SUBMIT,
        _job(db, JobStatus.SUBMITTED, updated_at=old, provider_request_id="1"): TaskKind.POLL,
        _job(db, JobStatus.PROCESSING, updated_at=old, fetch_url="http://p/1"): TaskKind.POLL,
        _job(db, JobStatus.ARCHIVING, updated_at=old): TaskKind.ARCHIVE,
    }
    held = _job(db, JobStatus.ARCHIVING, updated_at=old)
    fresh = _job(db, JobStatus.ARCHIVING)
    settled = _job(db, JobStatus.ARCHIVED, updated_at=old)
    with db.transaction() as s:
        queue.enqueue(s, TaskKind.ARCHIVE, job_id=held, dedupe_key=f"archive:{held}")
    # An archive task that failed for good leaves its job orphaned too.
    failed_archive = _job(db, JobStatus.ARCHIVING, updated_at=old)
    with db.transaction() as s:
        queue.enqueue(
            s, TaskKind.ARCHIVE, job_id=failed_archive, dedupe_key=f"archive:{failed_archive}"
        )
    [claimed] = [t for t in queue.claim("w", 10) if t.job_id == failed_archive]
    queue.fail(claimed, "w", "boom")
    orphans[failed_archive] = TaskKind.ARCHIVE

    Reconciler(db, queue, TIMING, stuck_after=900, max_age=86_400, orphan_after=30)()

    for job_id, kind in orphans.items():
        row = _task(db, job_id, kind)
        assert row is not None and row.status is TaskStatus.QUEUED, (job_id, kind)
    for job_id in (fresh, settled):
        with db.transaction() as s:
            assert s.execute(select(Task).where(Task.job_id == job_id)).first() is None
    with db.transaction() as s:
        assert len(s.execute(select(Task).where(Task.job_id == held)).all()) == 1


def test_what_counts_as_the_database_being_away() -> None:
    assert is_unavailable(_outage())
    locked = OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))
    assert is_unavailable(locked)
    schema = OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: jobs"))
    assert not is_unavailable(schema)
    assert not is_unavailable(IntegrityError("INSERT", {}, ValueError("duplicate")))
    assert not is_unavailable(ValueError("not a database error"))


def test_a_task_still_held_is_not_run_again_when_its_lease_lapsed_in_an_outage(
    db: Database,
) -> None:
    queue = TaskQueue(db, lease_seconds=0.05, default_max_attempts=5)
    job_id = _job(db)
    with db.transaction() as s:
        queue.enqueue(s, TaskKind.ARCHIVE, job_id=job_id)
    worker = Worker(queue, {}, on_give_up=lambda t, e: None, policy=RetryPolicy())
    [task] = worker._not_held(queue.claim(worker.id, 1))
    time.sleep(0.1)  # the outage outlasts the lease; the outcome is still waiting to be written
    again = queue.claim(worker.id, 1)
    assert [t.id for t in again] == [task.id]
    assert worker._not_held(again) == [], "this worker still runs it"
    assert worker.in_flight == 1


@pytest.fixture
def proxied_pg() -> Iterator[tuple[TcpProxy, Database]]:
    """A migrated PostgreSQL database reached through a proxy that can cut it off."""
    url = create_pg_database()
    direct = make_url(url)
    database = Database(make_engine(url))
    upgrade(database.engine)
    database.dispose()
    with TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
        through = direct.set(host="127.0.0.1", port=proxy.port)
        db = Database(make_engine(through.render_as_string(hide_password=False)))
        try:
            yield proxy, db
        finally:
            db.dispose()
            drop_pg_database(url)


def _claim_loop_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "service.tasks.worker"]


@pytest.mark.postgres
def test_the_claim_loop_says_once_that_the_database_is_away_and_once_that_it_is_back(
    proxied_pg: tuple[TcpProxy, Database], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, db = proxied_pg
    queue = TaskQueue(db, lease_seconds=30, default_max_attempts=3)
    ran = threading.Event()
    worker = Worker(queue, {TaskKind.SUBMIT: lambda t: ran.set()}, on_give_up=lambda t, e: None,
                    policy=RetryPolicy(), poll_interval=0.05)  # fmt: skip
    caplog.set_level(logging.INFO)
    proxy.refuse()
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        time.sleep(0.8)  # a dozen polls against a database that refuses connections
        proxy.heal()
        with db.transaction() as s:
            queue.enqueue(s, TaskKind.SUBMIT, job_id=None)
        assert ran.wait(10), "the worker never claimed again"
    finally:
        worker.stop()
        thread.join(10)
    away = [r for r in _claim_loop_records(caplog) if "database unavailable" in r.getMessage()]
    back = [r for r in _claim_loop_records(caplog) if "available again" in r.getMessage()]
    assert [r.levelno for r in away] == [logging.WARNING]
    assert [r.levelno for r in back] == [logging.INFO]
    assert [r.getMessage() for r in _claim_loop_records(caplog) if r.exc_info] == [], (
        "tracebacks only at debug"
    )


def test_a_claim_failing_for_another_reason_is_logged_every_time(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Not migrated: every claim fails on the missing table, which no waiting will fix.
    db = Database(make_engine(database_url))
    queue = TaskQueue(db, lease_seconds=30, default_max_attempts=3)
    worker = Worker(queue, {}, on_give_up=lambda t, e: None, policy=RetryPolicy(),
                    poll_interval=0.05)  # fmt: skip
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        time.sleep(0.5)
    finally:
        worker.stop()
        thread.join(10)
        db.dispose()
    failures = [r for r in _claim_loop_records(caplog) if r.getMessage() == "claiming tasks failed"]
    assert len(failures) >= 3
    assert all(r.levelno == logging.ERROR and r.exc_info for r in failures)
    assert not [r for r in _claim_loop_records(caplog) if "unavailable" in r.getMessage()]


@pytest.mark.postgres
def test_the_heartbeat_says_once_that_it_cannot_renew_and_once_that_it_can(
    proxied_pg: tuple[TcpProxy, Database], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, db = proxied_pg
    # A 1.5 s lease: the heartbeat renews every 0.5 s, and every second while it fails.
    queue = TaskQueue(db, lease_seconds=1.5, default_max_attempts=3)
    started, finish = threading.Event(), threading.Event()

    def hold(_task: object) -> None:
        started.set()
        finish.wait(20)

    worker = Worker(queue, {TaskKind.SUBMIT: hold}, on_give_up=lambda t, e: None,
                    policy=RetryPolicy(), poll_interval=0.05)  # fmt: skip
    with db.transaction() as s:
        queue.enqueue(s, TaskKind.SUBMIT, job_id=None)
    caplog.set_level(logging.INFO)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert started.wait(10)
        proxy.refuse()
        time.sleep(3.2)  # three or four failed renewals
        proxy.heal()
        time.sleep(1.5)  # renewed again
    finally:
        finish.set()
        worker.stop()
        thread.join(10)
    renewals = [r for r in _claim_loop_records(caplog) if "renewing leases" in r.getMessage()]
    assert [(r.levelno, r.getMessage().split(":")[0]) for r in renewals] == [
        (logging.WARNING, "renewing leases failed"),
        (logging.INFO, "renewing leases again"),
    ]
