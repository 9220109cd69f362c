"""Webhook callbacks wait as pending rows, and the worker's loop applies them (0011).

The webhook writes only the callback (tests/integration/test_speed.py); these check the
other half on both databases: the real Worker takes pending callbacks before it claims, a
callback that cannot be applied becomes a retried task instead of blocking the rest, the
queue gauges and the operations page count the pending ones, retention keeps them,
downgrading the revision hands them back to tasks, and SQLite finds them above a floor
instead of in an index (0012).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import Engine, func, select, text, update

from service.db import pending_callbacks
from service.db.migrate import alembic_config, upgrade
from service.db.models import Callback, Job, Task
from service.db.retention import prune
from service.db.session import make_engine
from service.jobs.applying import PendingCallbacks
from service.tasks.kinds import TaskKind
from service.wiring import Container
from tests.integration.test_ui import _sign_in
from tests.support.app import post_callback, submit_job

SUCCESS = {
    "status": "success",
    "id": 81443063,
    "output": ["https://cdn2.stablediffusionapi.com/generations/a-0.png"],
}


def _hook(client: FlaskClient, track_id: str, body: dict[str, Any]) -> None:
    r = post_callback(client, track_id, {**body, "track_id": track_id})
    assert r.get_json() == {"status": "accepted"}


def _downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def _status(c: Container, job_id: str) -> str:
    with c.db.transaction() as s:
        return str(s.execute(select(Job.status).where(Job.id == job_id)).scalar_one())


def test_the_worker_applies_pending_callbacks_before_it_claims(
    client: FlaskClient, container: Container
) -> None:
    jobs = [submit_job(client) for _ in range(3)]
    for job in jobs:
        _hook(client, job["track_id"], SUCCESS)
    # Batches of two: the intake says a full batch may have more behind it.
    worker = container.worker()
    worker.intake = PendingCallbacks(container.db, container.queue, container.timing, batch=2)
    assert worker.intake() is True
    assert [_status(container, j["id"]) for j in jobs].count("archiving") == 2
    assert worker.intake() is False
    assert {_status(container, j["id"]) for j in jobs} == {"archiving"}
    with container.db.transaction() as s:
        assert s.execute(select(func.count()).where(Callback.pending)).scalar_one() == 0
        archives = s.execute(select(Task.job_id).where(Task.kind == TaskKind.ARCHIVE)).scalars()
        assert sorted(archives) == sorted(j["id"] for j in jobs)

    # run_once takes the intake too, before claiming (and finds nothing left to apply).
    late = submit_job(client)
    _hook(client, late["track_id"], SUCCESS)
    worker.intake = PendingCallbacks(container.db, container.queue, container.timing)
    worker.handlers = {}  # no task may run here: only the intake is under test
    worker.concurrency = 0
    worker.run_once()
    assert _status(container, late["id"]) == "archiving"


def test_a_callback_that_cannot_be_applied_becomes_a_task_and_the_rest_go_on(
    client: FlaskClient, container: Container
) -> None:
    broken, fine = submit_job(client), submit_job(client)
    _hook(client, broken["track_id"], SUCCESS)
    _hook(client, fine["track_id"], SUCCESS)
    with container.db.transaction() as s:
        # A result the state machine cannot read (no status): applying it raises.
        s.execute(update(Callback).where(Callback.job_id == broken["id"]).values(result={"x": 1}))
    assert PendingCallbacks(container.db, container.queue, container.timing).apply() == 2
    assert _status(container, fine["id"]) == "archiving"
    assert _status(container, broken["id"]) == "queued"
    with container.db.transaction() as s:
        assert s.execute(select(func.count()).where(Callback.pending)).scalar_one() == 0
        [task] = s.execute(select(Task).where(Task.kind == TaskKind.CALLBACK)).scalars()
        cb_id = s.execute(select(Callback.id).where(Callback.job_id == broken["id"])).scalar()
    # The task retries it with the queue's backoff, and gives up visibly.
    assert (task.job_id, task.payload) == (broken["id"], {"callback_id": cb_id})


def test_gauges_the_operations_page_and_retention_see_pending_callbacks(
    client: FlaskClient, container: Container
) -> None:
    job = submit_job(client)
    _hook(client, job["track_id"], SUCCESS)
    assert client.get("/metrics").status_code == 200
    assert REGISTRY.get_sample_value("genvault_tasks_queued", {"kind": "callback"}) == 1
    _sign_in(client)
    ops = client.get("/ui/ops").get_data(as_text=True)
    assert '<b id="callbacks-pending">1</b>' in ops

    # Retention never prunes a callback the worker has yet to apply, however old.
    with container.db.transaction() as s:
        s.execute(update(Job).values(status="archived"))
        s.execute(update(Task).values(status="done"))  # its submit task, long finished
    later = datetime.now(UTC) + timedelta(days=400)
    prune(container.db, timedelta(days=30), now=later)
    with container.db.transaction() as s:
        assert s.execute(select(func.count()).select_from(Callback)).scalar_one() == 1
        s.execute(update(Callback).values(pending=False))
    prune(container.db, timedelta(days=30), now=later)
    with container.db.transaction() as s:
        assert s.execute(select(func.count()).select_from(Callback)).scalar_one() == 0


def test_downgrading_0011_gives_pending_callbacks_their_tasks(
    client: FlaskClient, container: Container
) -> None:
    job = submit_job(client)
    _hook(client, job["track_id"], SUCCESS)
    engine = make_engine(container.settings.database_url)
    try:
        _downgrade(engine, "0010")
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT job_id, payload FROM tasks WHERE kind = 'callback'")
            ).all()
            callback_id = conn.execute(text("SELECT id FROM callbacks")).scalar_one()
        [(job_id, payload)] = rows
        payload = json.loads(payload) if isinstance(payload, str) else payload
        assert (job_id, payload) == (job["id"], {"callback_id": callback_id})
        upgrade(engine)
    finally:
        engine.dispose()


def test_the_intake_never_waits_for_a_job_another_transaction_holds(
    client: FlaskClient, container: Container
) -> None:
    """The intake holds its callbacks' locks when it locks their jobs; an erasure locks a job
    and then deletes the job's callbacks. Were the intake to wait for the job, the two would
    deadlock on a late callback of a job being erased."""
    if container.db.dialect != "postgresql":
        pytest.skip("row locks are PostgreSQL's: SQLite's writers take turns on the whole file")
    held, free = submit_job(client), submit_job(client)
    _hook(client, held["track_id"], SUCCESS)
    _hook(client, free["track_id"], SUCCESS)
    intake = PendingCallbacks(container.db, container.queue, container.timing)
    with container.db.engine.connect() as other, other.begin():
        other.execute(select(Job.id).where(Job.id == held["id"]).with_for_update())
        settled: list[int] = []
        thread = threading.Thread(target=lambda: settled.append(intake.apply()))
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the intake waited for a job another transaction holds"
        assert settled == [1]
        assert _status(container, free["id"]) == "archiving"
        with container.db.read() as conn:
            pending = conn.execute(select(Callback.job_id).where(Callback.pending)).scalars()
            assert list(pending) == [held["id"]]
        # A full batch that settles nothing does not ask to be called again at once.
        assert PendingCallbacks(container.db, container.queue, container.timing, batch=1)() is False
    # Once the other transaction ends, the next pass applies it.
    assert intake.apply() == 1
    assert _status(container, held["id"]) == "archiving"


def _floor(c: Container) -> int:
    with c.db.read() as conn:
        return int(conn.execute(text("SELECT id FROM callbacks_floor")).scalar_one())


def _pending_ids(c: Container) -> list[int]:
    with c.db.read() as conn:
        return list(conn.execute(select(Callback.id).where(Callback.pending)).scalars())


def test_the_intake_finds_pending_callbacks_without_reading_the_table(
    container: Container,
) -> None:
    """PostgreSQL through the partial index, SQLite by rowid from its floor up (0012)."""
    dialect = container.db.dialect
    intake = select(Callback.id).where(pending_callbacks.pending(dialect))
    with container.db.read() as conn:
        sql = (
            intake.order_by(Callback.id)
            .limit(100)
            .compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        )
        if dialect == "sqlite":
            plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            assert any("INTEGER PRIMARY KEY (rowid>?)" in step for step in plan), plan
        else:
            # The table is small here: a scan would be cheaper, so scans are ruled out, and
            # only a query the index's predicate covers can still use the index.
            conn.exec_driver_sql("SET enable_seqscan = off")
            try:
                plan = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {sql}")]
            finally:
                conn.exec_driver_sql("RESET enable_seqscan")
            assert any("ix_callbacks_pending" in step for step in plan), plan


def test_sqlite_finds_pending_callbacks_above_a_floor_that_the_intake_raises(
    client: FlaskClient, container: Container
) -> None:
    """0012: SQLite has no index of pending callbacks; they are the pending rows above a
    floor, which only the intake raises, and which a delete of the highest rows lowers."""
    if container.db.dialect != "sqlite":
        pytest.skip("PostgreSQL keeps the partial index: its ids do not follow commit order")
    with container.db.read() as conn:
        indexes = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'index'"))
        assert "ix_callbacks_pending" not in set(indexes.scalars())
    jobs = [submit_job(client) for _ in range(4)]
    for job in jobs[:2]:
        _hook(client, job["track_id"], SUCCESS)
    first, second = _pending_ids(container)
    # A batch of one stops the floor right below the callback still pending.
    PendingCallbacks(container.db, container.queue, container.timing, batch=1).apply()
    assert _floor(container) == first
    PendingCallbacks(container.db, container.queue, container.timing).apply()
    assert (_floor(container), _pending_ids(container)) == (second, [])

    # The highest callback deleted (say its job was erased): SQLite gives its id to the next
    # row, which is at the floor. The trigger lowers the floor, so it is still found.
    with container.db.transaction() as s:
        s.execute(text("DELETE FROM callbacks WHERE id = :id"), {"id": second})
    assert _floor(container) == first
    _hook(client, jobs[2]["track_id"], SUCCESS)
    assert _pending_ids(container) == [second]  # the same id, again
    assert PendingCallbacks(container.db, container.queue, container.timing).apply() == 1
    assert _status(container, jobs[2]["id"]) == "archiving"

    # Callbacks that were never pending (submit and poll answers) pile up above the floor
    # until a pass that finds nothing pending raises it past them.
    with container.db.transaction() as s:
        s.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)"
                " INSERT INTO callbacks (job_id, source, status, body, result, body_sha256,"
                " received_at, pending) SELECT :job, 'poll', 'processing', '{}', '{}',"
                " printf('%064d', i), CURRENT_TIMESTAMP, 0 FROM n"
            ),
            {"job": jobs[3]["id"]},
        )
        top = s.execute(select(func.max(Callback.id))).scalar_one()
    assert _floor(container) == second
    assert PendingCallbacks(container.db, container.queue, container.timing).apply() == 0
    assert _floor(container) == top


def test_0012_starts_sqlite_s_floor_below_the_oldest_pending_callback(
    client: FlaskClient, container: Container
) -> None:
    if container.db.dialect != "sqlite":
        pytest.skip("0012 changes nothing on PostgreSQL")
    jobs = [submit_job(client) for _ in range(3)]
    for job in jobs:
        _hook(client, job["track_id"], SUCCESS)
    low, middle, high = _pending_ids(container)
    with container.db.transaction() as s:
        s.execute(update(Callback).where(Callback.id != middle).values(pending=False))
    engine = make_engine(container.settings.database_url)
    try:
        _downgrade(engine, "0011")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM callbacks WHERE pending")).scalar() == 1
        upgrade(engine)
    finally:
        engine.dispose()
    assert _floor(container) == low
    assert PendingCallbacks(container.db, container.queue, container.timing).apply() == 1
    assert _floor(container) == high
