"""`genvault db copy --to URL`: from the embedded SQLite into PostgreSQL (or another SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from service.app import create_app
from service.cli import main
from service.db.copy import CopyRefused, copy_database
from service.db.migrate import upgrade
from service.db.models import AuditEntry, Base, EventEndpoint, Job, Task
from service.db.search import matches
from service.db.session import make_engine
from service.db.types import utcnow
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue
from service.tasks.status import TaskStatus
from service.wiring import Container, build
from tests.support.app import AUTH, make_settings
from tests.support.db import create_pg_database, drop_pg_database, sqlite_url
from tests.support.lifecycle import Populated, populate


def _container(url: str, tmp_path: Path) -> Container:
    c = build(make_settings(url, tmp_path))
    upgrade(c.db.engine)
    return c


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[Container, Populated]]:
    (tmp_path / "src").mkdir()
    c = _container(sqlite_url(tmp_path / "src"), tmp_path)
    try:
        yield c, populate(c.db)
    finally:
        c.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def _counts(c: Container) -> dict[str, int]:
    with c.db.engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in Base.metadata.sorted_tables
        }


def _answers(c: Container, job_ids: list[str]) -> list[Any]:
    client = create_app(container=c).test_client()
    out: list[Any] = [client.get("/v1/jobs?limit=50", headers=AUTH).get_json()["jobs"]]
    out += [client.get(f"/v1/jobs/{job_id}", headers=AUTH).get_json() for job_id in job_ids]
    for job in [*out[0], *out[1:]]:
        for asset in job["assets"]:
            asset.pop("url")  # a signed link: its expiry moves with the clock
    return out


def _rows(c: Container, model: Any) -> list[Any]:
    with c.db.transaction() as s:
        return [tuple(r) for r in s.execute(select(model.__table__).order_by(text("1")))]


@pytest.mark.postgres
def test_sqlite_to_postgresql_copies_every_row_and_the_api_answers_the_same(
    source: tuple[Container, Populated],
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src, data = source
    target = _container(pg_url, tmp_path)
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("GENVAULT_DATABASE_URL", src.settings.database_url)
        assert main(["db", "copy", "--to", pg_url]) == 0
        out, err = capsys.readouterr()
        assert "counts match" in out and "jobs" in err
        counts = _counts(src)
        assert counts == _counts(target)
        assert all(counts[t] > 0 for t in counts), counts  # every table had rows to copy
        jobs = list(data.jobs.values())
        assert _answers(src, jobs) == _answers(target, jobs)
        for model in (AuditEntry, EventEndpoint, Task):  # secrets, audit trail, work in flight
            assert _rows(src, model) == _rows(target, model)
        # The sequences start past the copied ids: new rows do not collide.
        with target.db.transaction() as s:
            s.add(AuditEntry(actor="t", action="key.create", outcome="ok"))
            s.add(
                Task(
                    kind=TaskKind.POLL,
                    job_id=None,
                    payload={},
                    status=TaskStatus.QUEUED,
                    max_attempts=1,
                    run_after=utcnow(),
                )
            )
        # The copied jobs are found by the gallery's word search.
        with target.db.transaction() as s:
            found = s.execute(select(Job.id).where(matches("postgresql", "lighthouse"))).all()
        assert len(found) == len(jobs)
        # A second copy into the now full target is refused.
        assert main(["db", "copy", "--to", pg_url]) == 1
        assert "not empty" in capsys.readouterr().err
    finally:
        target.close()


def test_sqlite_to_sqlite_keeps_the_search_index_in_step(
    source: tuple[Container, Populated], tmp_path: Path
) -> None:
    src, data = source
    (tmp_path / "dst").mkdir()
    target = _container(sqlite_url(tmp_path / "dst"), tmp_path)
    try:
        counts = copy_database(src.db.engine, target.db.engine, batch=3)
        assert {c.table: c.target for c in counts} == _counts(src)
        with target.db.transaction() as s:
            assert s.execute(text("SELECT count(*) FROM jobs_fts")).scalar_one() == len(data.jobs)
            found = s.execute(select(Job.id).where(matches("sqlite", "lighthouse"))).all()
        assert len(found) == len(data.jobs)
    finally:
        target.close()


def test_a_target_not_migrated_or_not_empty_is_refused(
    source: tuple[Container, Populated], tmp_path: Path
) -> None:
    src, _ = source
    (tmp_path / "bare").mkdir()
    bare = make_engine(sqlite_url(tmp_path / "bare"))
    with pytest.raises(CopyRefused, match="revision none"):
        copy_database(src.db.engine, bare)
    bare.dispose()
    with pytest.raises(CopyRefused, match="not empty"):
        copy_database(src.db.engine, src.db.engine)


@pytest.mark.postgres
def test_postgresql_to_sqlite_reads_one_snapshot_and_copies_everything(
    pg_url: str, tmp_path: Path
) -> None:
    src = _container(pg_url, tmp_path)
    (tmp_path / "dst").mkdir()
    target = _container(sqlite_url(tmp_path / "dst"), tmp_path)
    try:
        populate(src.db)
        counts = copy_database(src.db.engine, target.db.engine)
        assert {c.table: c.source for c in counts} == _counts(target) == _counts(src)
    finally:
        target.close()
        src.close()


def test_a_task_a_dead_worker_held_is_taken_over_at_once_in_the_copy(tmp_path: Path) -> None:
    # A worker of the old database was killed (not stopped) while running a task: its lease
    # still runs there, but nobody holds the task in the copy, so nobody should wait for it.
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    src = _container(sqlite_url(tmp_path / "src"), tmp_path)
    target = _container(sqlite_url(tmp_path / "dst"), tmp_path)
    try:
        old = TaskQueue(src.db, lease_seconds=600, default_max_attempts=3)
        with src.db.transaction() as s:
            old.enqueue(s, TaskKind.ARCHIVE, job_id=None, dedupe_key="held")
            old.enqueue(s, TaskKind.POLL, job_id=None, dedupe_key="later", delay=600)
        (held,) = old.claim("worker-that-died", 10)
        assert old.claim("a-live-worker", 10) == []  # held, by the old database's reckoning

        copy_database(src.db.engine, target.db.engine)

        new = TaskQueue(target.db, lease_seconds=30, default_max_attempts=3)
        (taken,) = new.claim("new-worker", 10)
        # Taken over, as from a worker whose lease ran out: its attempt is counted when it
        # starts, not twice.
        assert (taken.id, taken.kind, taken.counted) == (held.id, TaskKind.ARCHIVE, False)
        assert taken.attempts == held.attempts == 1
        # The rest is as it was: the queued task waits for its time, and the source keeps
        # its lease (the copy only reads it).
        assert new.claim("new-worker", 10) == []
        with src.db.transaction() as s:
            lease = s.execute(select(Task.locked_until).where(Task.id == held.id)).scalar_one()
        assert lease is not None and lease > utcnow()
    finally:
        target.close()
        src.close()
