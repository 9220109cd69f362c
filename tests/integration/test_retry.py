"""An operator's retry through the API and the dashboard, with the sandbox as the provider.

A job the provider failed ("Failed, Try Again") is resubmitted once, as a new generation
with the same track_id; a job whose outcome with the provider is unknown is not, so
nothing is paid twice. The job page's button says which of the two a retry would do.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from service.app import create_app
from service.db.migrate import upgrade
from service.db.models import Callback
from service.db.types import utcnow
from service.jobs import operator_retry, records
from service.jobs.states import JobStatus
from service.sandbox import SandboxConfig, SandboxServer, start_in_thread
from service.sandbox.app import sandbox_state
from service.security.tokens import webhook_token
from service.tasks.worker import Worker
from service.wiring import Container, build
from tests.support.app import AUTH, SECRET, TOKEN, apply_callbacks, make_settings

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
RETRY_BUTTON = re.compile(r'<form [^>]*id="retry">.*?<button [^>]*>([^<]*)</button>', re.S)
RESUBMIT = "Resubmit to the provider (a new generation)"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    # No webhooks: the tests settle jobs by polling, or deliver a callback themselves.
    server, thread = start_in_thread("127.0.0.1", 0, SandboxConfig(modes=("webhook-never",)))
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def c(database_url: str, tmp_path: Path, sandbox: SandboxServer) -> Iterator[Container]:
    settings = make_settings(
        database_url,
        tmp_path,
        modelslab_base_url=sandbox.modelslab_base_url,
        download_allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        download_allowed_hosts=("127.0.0.1",),
        poll_grace_seconds=0,
        retry_base_seconds=0.01,
    )
    container = build(settings)
    upgrade(container.db.engine)
    try:
        yield container
    finally:
        container.close()


@pytest.fixture
def client(c: Container) -> FlaskClient:
    return create_app(container=c).test_client()


def _submit(client: FlaskClient, prompt: str) -> dict[str, Any]:
    body = {
        "endpoint": "modelslab/text2img",
        "params": {"model_id": "flux", "prompt": f"{prompt} {uuid.uuid4().hex}"},
    }
    r = client.post("/v1/jobs", json={**body}, headers=AUTH)
    assert r.status_code == 202, r.get_data(as_text=True)
    job: dict[str, Any] = r.get_json()
    return job


def _settle(c: Container, worker: Worker, job_id: str, *until: JobStatus) -> Any:
    """Run the due tasks until the job is in one of ``until`` (or nothing is left to run)."""
    for _ in range(20):
        with c.db.transaction() as s:
            job = records.get_job(s, job_id)
        if job.status in until or not worker.run_once():
            break
    with c.db.transaction() as s:
        job = records.get_job(s, job_id)
    assert job.status in until, (job.status, job.error_code, job.error_message)
    return job


def _answers(c: Container, job_id: str) -> list[tuple[str, str]]:
    with c.db.transaction() as s:
        rows = s.execute(
            select(Callback.source, Callback.status)
            .where(Callback.job_id == job_id)
            .order_by(Callback.id)
        ).all()
    return [(source, status) for source, status in rows]


def _sign_in(client: FlaskClient) -> None:
    token = CSRF.search(client.get("/ui/login").get_data(as_text=True))
    assert token
    r = client.post("/ui/login", data={"token": TOKEN, "csrf_token": token.group(1)})
    assert r.status_code == 302, r.get_data(as_text=True)


def _retry_button(client: FlaskClient, job_id: str) -> str | None:
    page = client.get(f"/ui/jobs/{job_id}")
    assert page.status_code == 200
    found = RETRY_BUTTON.search(page.get_data(as_text=True))
    return found.group(1) if found else None


def test_a_job_the_provider_failed_is_resubmitted_once_and_archived(
    client: FlaskClient, c: Container, sandbox: SandboxServer
) -> None:
    # The sandbox accepts the first generation, then reports it failed; the next succeeds.
    job = _submit(client, "a ruin [sandbox:fail=1,eta=0]")
    worker = c.worker()
    failed = _settle(c, worker, job["id"], JobStatus.FAILED)
    assert (failed.error_code, failed.error_message) == ("provider_error", "Failed, Try Again")
    first_id = failed.provider_request_id
    assert first_id and failed.submit_attempts == 1
    assert _answers(c, job["id"]) == [("submit", "processing"), ("poll", "failed")]
    _sign_in(client)
    assert _retry_button(client, job["id"]) == RESUBMIT

    r = client.post(f"/v1/jobs/{job['id']}/retry", headers=AUTH)
    assert r.status_code == 202, r.get_data(as_text=True)
    shown = r.get_json()
    assert shown["status"] == "queued" and shown["error"] is None
    assert shown["provider_request_id"] is None and shown["track_id"] == job["track_id"]

    done = _settle(c, worker, job["id"], JobStatus.ARCHIVED)
    # One new generation, sent once, recorded as the second attempt of the same job.
    assert sandbox_state(sandbox.app).store.submissions() == {job["track_id"]: 2}
    assert done.submit_attempts == 2 and done.track_id == job["track_id"]
    assert done.provider_request_id not in (None, first_id)
    assert _answers(c, job["id"]) == [
        ("submit", "processing"),
        ("poll", "failed"),
        ("submit", "success"),
    ]
    assert done.result_callback_id is not None and done.manifest_key
    with c.store.open(done.manifest_key) as f:
        manifest = json.load(f)
    # The manifest tells of the generation whose images it lists.
    assert manifest["provider"]["request_id"] == done.provider_request_id
    assert manifest["provider"]["response"]["status"] == "success"
    assert manifest["timings"]["submitted_at"] > failed.submitted_at.isoformat()
    assert _retry_button(client, job["id"]) is None  # archived: nothing to retry
    # Archived: the API refuses too, and nothing more reaches the provider.
    assert client.post(f"/v1/jobs/{job['id']}/retry", headers=AUTH).status_code == 409
    assert sandbox_state(sandbox.app).store.submissions() == {job["track_id"]: 2}


def test_a_late_answer_about_the_failed_generation_does_not_fail_the_new_one(
    client: FlaskClient, c: Container, sandbox: SandboxServer
) -> None:
    job = _submit(client, "a ruin [sandbox:fail=1,eta=0]")
    worker = c.worker()
    failed = _settle(c, worker, job["id"], JobStatus.FAILED)
    first_id = failed.provider_request_id
    assert client.post(f"/v1/jobs/{job['id']}/retry", headers=AUTH).status_code == 202
    # The failed generation's webhook, late (after the retry, before the new answer).
    late = {
        "status": "failed",
        "id": int(first_id),
        "message": "Failed, Try Again",
        "track_id": job["track_id"],
    }
    token = webhook_token(SECRET.encode(), "modelslab", job["track_id"])
    r = client.post(
        f"/webhooks/modelslab/{job['track_id']}?token={token}",
        data=json.dumps(late),
        content_type="application/json",
    )
    assert r.status_code == 200 and r.get_json() == {"status": "accepted"}
    assert apply_callbacks(c) == 1
    with c.db.transaction() as s:
        waiting = records.get_job(s, job["id"])
    # Kept as history, but it neither failed the job nor lent it the old id.
    assert waiting.status is JobStatus.QUEUED and waiting.provider_request_id is None

    done = _settle(c, worker, job["id"], JobStatus.ARCHIVED)
    assert done.provider_request_id != first_id
    assert sandbox_state(sandbox.app).store.submissions() == {job["track_id"]: 2}


def test_a_retry_that_fails_again_can_be_retried_again(
    client: FlaskClient, c: Container, sandbox: SandboxServer
) -> None:
    job = _submit(client, "a ruin [sandbox:fail=2,eta=0]")
    worker = c.worker()
    _settle(c, worker, job["id"], JobStatus.FAILED)
    assert client.post(f"/v1/jobs/{job['id']}/retry", headers=AUTH).status_code == 202
    again = _settle(c, worker, job["id"], JobStatus.FAILED)
    assert again.error_message == "Failed, Try Again" and again.submit_attempts == 2
    assert client.post(f"/v1/jobs/{job['id']}/retry", headers=AUTH).status_code == 202
    done = _settle(c, worker, job["id"], JobStatus.ARCHIVED)
    assert done.submit_attempts == 3
    assert sandbox_state(sandbox.app).store.submissions() == {job["track_id"]: 3}


def test_a_job_whose_outcome_is_unknown_is_not_resubmitted(
    client: FlaskClient, c: Container, sandbox: SandboxServer
) -> None:
    # Accepted, then nothing: the provider may still be generating it.
    job = _submit(client, "a ruin [sandbox:processing,eta=600]")
    worker = c.worker()
    _settle(c, worker, job["id"], JobStatus.PROCESSING)
    with c.db.transaction() as s:
        records.fail(records.get_job(s, job["id"], for_update=True), "timeout", "no result")

    r = client.post(f"/v1/jobs/{job['id']}/retry", headers=AUTH)
    assert r.status_code == 409
    assert r.get_json()["error"]["message"] == operator_retry.ACCEPTED_NO_RESULT
    assert operator_retry.ACCEPTED_NO_RESULT == (
        "the provider accepted this job but never delivered a result; submit a new job"
    )
    _sign_in(client)
    assert _retry_button(client, job["id"]) is None
    page = client.get(f"/ui/jobs/{job['id']}").get_data(as_text=True)
    assert "never delivered a result" in page
    # The dashboard's form, posted anyway: refused the same way.
    token = CSRF.search(page)
    assert token
    r = client.post(f"/ui/jobs/{job['id']}/retry", data={"csrf_token": token.group(1)})
    assert r.status_code == 302
    assert "never delivered a result" in client.get(r.headers["Location"]).get_data(as_text=True)
    with c.db.transaction() as s:
        assert records.get_job(s, job["id"]).status is JobStatus.FAILED
    assert sandbox_state(sandbox.app).store.submissions() == {job["track_id"]: 1}


def test_an_unanswered_submission_is_not_resubmitted(client: FlaskClient, c: Container) -> None:
    job = _submit(client, "a ruin")
    with c.db.transaction() as s:
        row = records.get_job(s, job["id"], for_update=True)
        row.submit_attempted_at, row.submit_attempts = utcnow(), 1  # the call's answer was lost
        records.fail(row, "submission_uncertain", "no answer")
    r = client.post(f"/v1/jobs/{job['id']}/retry", headers=AUTH)
    assert r.status_code == 409
    assert r.get_json()["error"]["message"] == operator_retry.UNANSWERED


def test_the_button_says_what_a_retry_does(client: FlaskClient, c: Container) -> None:
    _sign_in(client)
    # Never sent (the provider refused it, say): a resubmission.
    never = _submit(client, "a ruin")
    with c.db.transaction() as s:
        records.fail(records.get_job(s, never["id"], for_update=True), "provider_auth", "no key")
    assert _retry_button(client, never["id"]) == RESUBMIT

    # The provider delivered a result and the archive failed: archive again.
    delivered = _submit(client, "a ruin")
    body = {"status": "success", "id": 7, "output": ["https://example.com/a.png"]}
    token = webhook_token(SECRET.encode(), "modelslab", delivered["track_id"])
    client.post(
        f"/webhooks/modelslab/{delivered['track_id']}?token={token}",
        data=json.dumps(body),
        content_type="application/json",
    )
    apply_callbacks(c)
    with c.db.transaction() as s:
        records.fail(records.get_job(s, delivered["id"], for_update=True), "invalid_image", "x")
    assert _retry_button(client, delivered["id"]) == "Archive again"

    # Not failed: no button.
    assert _retry_button(client, _submit(client, "a ruin")["id"]) is None

    # Pressed after the job changed (here: a result came in since the page was shown).
    page = client.get(f"/ui/jobs/{delivered['id']}").get_data(as_text=True)
    token_match = CSRF.search(page)
    assert token_match
    r = client.post(
        f"/ui/jobs/{delivered['id']}/retry",
        data={"csrf_token": token_match.group(1), "action": "resubmit"},
    )
    assert r.status_code == 302
    assert "a retry would now archive again" in client.get(r.headers["Location"]).get_data(
        as_text=True
    )
    with c.db.transaction() as s:
        assert records.get_job(s, delivered["id"]).status is JobStatus.FAILED
    # As shown: done.
    r = client.post(
        f"/ui/jobs/{delivered['id']}/retry",
        data={"csrf_token": token_match.group(1), "action": "rearchive"},
    )
    assert r.status_code == 302
    with c.db.transaction() as s:
        assert records.get_job(s, delivered["id"]).status is JobStatus.ARCHIVING
