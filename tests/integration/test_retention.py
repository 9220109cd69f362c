"""Retention (GENVAULT_RETENTION_DAYS, `genvault prune`) on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.cli import main
from service.db.models import (
    ApiKey,
    Asset,
    AuditEntry,
    Callback,
    DeliveryAttempt,
    Event,
    EventDelivery,
    EventEndpoint,
    Job,
    Project,
    Task,
)
from service.db.retention import Pruner, parse_duration, prune
from service.errors import ConfigError
from service.wiring import Container
from tests.support.app import AUTH
from tests.support.lifecycle import populate

NEVER_PRUNED = (Job, Asset, Project, ApiKey, EventEndpoint, AuditEntry)


def _ids(c: Container, column: Any) -> set[Any]:
    with c.db.transaction() as s:
        return set(s.execute(select(column)).scalars())


def _count(c: Container, model: Any) -> int:
    with c.db.transaction() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _answers(client: FlaskClient, job_ids: list[str]) -> list[dict[str, Any]]:
    out = []
    for job_id in job_ids:
        answer = client.get(f"/v1/jobs/{job_id}", headers=AUTH)
        assert answer.status_code == 200
        body = answer.get_json()
        for asset in body["assets"]:
            asset.pop("url")  # a signed link: its expiry moves with the clock
        out.append(body)
    return out


def test_prune_removes_old_finished_rows_and_keeps_every_job_its_assets_and_live_work(
    container: Container, client: FlaskClient
) -> None:
    data = populate(container.db)
    jobs = list(data.jobs.values())
    before = _answers(client, jobs)
    kept = {m: _count(container, m) for m in NEVER_PRUNED}

    removed = prune(container.db, timedelta(days=30), batch=2)

    assert removed["tasks"] == len(data.pruned_tasks)
    assert removed["callbacks"] == len(data.pruned_callbacks)
    assert removed["events"] == len(data.pruned_events)
    assert removed["event_deliveries"] == removed["event_delivery_attempts"] == 2
    assert _ids(container, Task.id) == data.kept_tasks
    assert _ids(container, Callback.id) == data.kept_callbacks
    assert _ids(container, Event.id) == data.kept_events
    assert data.pending_delivery in _ids(container, EventDelivery.id)
    # The pending event keeps both its deliveries and their attempts.
    assert _count(container, EventDelivery) == _count(container, DeliveryAttempt) == 4
    assert {m: _count(container, m) for m in NEVER_PRUNED} == kept
    assert _answers(client, jobs) == before
    # Nothing more is old enough the second time.
    assert set(prune(container.db, timedelta(days=30)).values()) == {0}


def test_nothing_younger_than_the_window_goes(container: Container) -> None:
    populate(container.db, age=timedelta(days=10))
    before = {m: _count(container, m) for m in (Task, Callback, Event, EventDelivery)}
    assert set(Pruner(container.db, days=30)().values()) == {0}
    assert Pruner(container.db, days=0)() == {}  # 0 turns retention off
    assert {m: _count(container, m) for m in (Task, Callback, Event, EventDelivery)} == before


def test_the_worker_round_is_bounded_and_drains_over_rounds(container: Container) -> None:
    data = populate(container.db)
    pruner = Pruner(container.db, days=30, max_batches=1)
    first = prune(container.db, timedelta(days=30), batch=1, max_batches=1, cursor=pruner.cursor)
    assert first["tasks"] == 1 and first["callbacks"] <= 1 and first["events"] == 1
    # The callbacks' walk by id goes on from where the last round stopped.
    assert pruner.cursor.after == 1
    rounds = 1
    while (
        _ids(container, Callback.id) != data.kept_callbacks
        or _ids(container, Task.id) != data.kept_tasks
    ):
        prune(container.db, timedelta(days=30), batch=1, max_batches=1, cursor=pruner.cursor)
        rounds += 1
        assert rounds < 50
    assert _ids(container, Event.id) == data.kept_events
    # Caught up, the walk waits at the first callback inside the window.
    young = populate(container.db, age=timedelta(days=1))
    pruner()
    assert young.pruned_callbacks <= _ids(container, Callback.id)
    assert pruner.cursor.after == min(young.kept_callbacks | young.pruned_callbacks) - 1


def test_genvault_prune_prints_what_it_removed(
    container: Container,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = populate(container.db)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENVAULT_DATABASE_URL", container.settings.database_url)
    monkeypatch.setenv("GENVAULT_RETENTION_DAYS", "0")
    assert main(["prune"]) == 2  # off, and no window named: refused, with why
    assert "GENVAULT_RETENTION_DAYS=0" in capsys.readouterr().err
    assert main(["prune", "--older-than", "90d"]) == 0
    assert "tasks: 0 removed" in capsys.readouterr().out
    assert main(["prune", "--older-than", "30d"]) == 0
    out = capsys.readouterr().out
    assert f"tasks: {len(data.pruned_tasks)} removed" in out
    assert f"callbacks: {len(data.pruned_callbacks)} removed" in out
    assert "events: 1 removed" in out
    assert main(["prune", "--older-than", "soon"]) == 2


def test_durations() -> None:
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration(" 90m ") == timedelta(minutes=90)
    for bad in ("", "30", "d", "-1d", "1w"):
        with pytest.raises(ConfigError):
            parse_duration(bad)


def test_the_worker_prunes_on_its_own(container: Container) -> None:
    data = populate(container.db)
    (pruning,) = [p for p in container.worker().periodic if p.name == "prune"]
    assert pruning.interval == container.settings.retention_interval_seconds
    pruning.run()
    assert _ids(container, Task.id) == data.kept_tasks
    assert _ids(container, Event.id) == data.kept_events
