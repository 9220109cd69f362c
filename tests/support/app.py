"""A wired genvault (real database, file archive) and its Flask test client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from service.app import create_app
from service.config import Settings, load_settings
from service.db.migrate import upgrade
from service.db.models import Task
from service.security.tokens import webhook_token
from service.tasks.kinds import TaskKind
from service.tasks.queue import ClaimedTask
from service.tasks.status import TaskStatus
from service.wiring import Container, build

TOKEN = "test-token"
SECRET = "test-secret-0123456789abcdef0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "archive_url": f"file://{tmp_path / 'archive'}",
        "public_url": "http://127.0.0.1:9",
        "secret_key": SECRET,
        "api_tokens": (TOKEN,),
        "modelslab_api_key": "ml-test-key",
        "modelslab_enterprise_api_key": "ml-enterprise-test-key",
        "aimlapi_api_key": "aiml-test-key",
        "log_json": True,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def container(database_url: str, tmp_path: Path) -> Iterator[Container]:
    c = build(make_settings(database_url, tmp_path))
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def client(container: Container) -> FlaskClient:
    return create_app(container=container).test_client()


def submit_job(client: FlaskClient) -> dict[str, Any]:
    """A ModelsLab text2img job through the API (202); its JSON."""
    r = client.post(
        "/v1/jobs",
        json={"endpoint": "modelslab/text2img", "params": {"model_id": "m", "prompt": "a"}},
        headers=AUTH,
    )
    assert r.status_code == 202, r.get_data(as_text=True)
    return r.get_json()  # type: ignore[no-any-return]


def post_callback(client: FlaskClient, track_id: str, body: dict[str, Any]) -> TestResponse:
    """ModelsLab's webhook for ``track_id``, correctly tokened, with ``body``."""
    token = webhook_token(SECRET.encode(), "modelslab", track_id)
    return client.post(
        f"/webhooks/modelslab/{track_id}?token={token}",
        data=json.dumps(body),
        content_type="application/json",
    )


def apply_callbacks(c: Container) -> int:
    """The worker's half of the webhooks received so far: apply the pending callbacks, and
    run any callback tasks, in order; how many were applied.

    Only those: a test's queued submit task must not be sent anywhere.
    """
    # Here: benches import this module too.
    from service.jobs.applying import CallbackApplier, PendingCallbacks

    applied = 0
    pending = PendingCallbacks(c.db, c.queue, c.timing)
    while taken := pending.apply():
        applied += taken
    applier = CallbackApplier(c.db, c.queue, c.timing)
    with c.db.transaction() as s:
        rows = s.execute(
            select(Task)
            .where(Task.kind == TaskKind.CALLBACK, Task.status == TaskStatus.QUEUED)
            .order_by(Task.id)
        ).scalars()
        tasks = [ClaimedTask(t.id, t.kind, t.job_id, 1, t.max_attempts, t.payload) for t in rows]
    for task in tasks:
        applier(task)
        with c.db.transaction() as s:
            s.execute(update(Task).where(Task.id == task.id).values(status=TaskStatus.DONE))
    return applied + len(tasks)


def run_cli(
    c: Container, *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`genvault ARGS…` as a process beside ``c``: its database and archive, the test
    secret, and the AWS_* variables that point boto3 at moto's server."""
    env = {
        "GENVAULT_DATABASE_URL": c.settings.database_url,
        "GENVAULT_ARCHIVE_URL": c.settings.archive_url,
        "GENVAULT_SECRET_KEY": SECRET,
        "PATH": str(Path(sys.executable).parent),
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
    }
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
