"""Events out, through the API and the worker, to real receivers on loopback.

Receivers verify with the official ``standardwebhooks`` package. The retry schedule is
shortened with GENVAULT_EVENTS_RETRY_SCHEDULE's setting, never by patching code.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook

from service.app import create_app
from service.db.migrate import upgrade
from service.db.models import Event, EventDelivery, EventEndpoint, Job, Task
from service.db.types import utcnow
from service.jobs import records
from service.jobs.states import JobStatus
from service.tasks.kinds import TaskKind
from service.wiring import Container, build
from tests.support.app import AUTH, make_settings
from tests.support.db import sqlite_url
from tests.support.receivers import Receiver, start_receiver

pytestmark = pytest.mark.timeout(60)


EVENT_SETTINGS: dict[str, Any] = {
    "events_allowed_networks": "127.0.0.1/32",
    "events_retry_schedule": "0.1,0.1",
    "events_timeout": 2,
    "events_endpoint_concurrency": 1,
    "worker_poll_interval": 0.1,
}


@pytest.fixture
def events_container(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Container]:
    marker = request.node.get_closest_marker("event_settings")
    overrides = {**EVENT_SETTINGS, **(marker.kwargs if marker else {})}
    c = build(make_settings(database_url, tmp_path, **overrides))
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def api(events_container: Container) -> FlaskClient:
    return create_app(container=events_container).test_client()


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[FlaskClient]:
    """The API alone on SQLite: for checks where the database makes no difference."""
    c = build(make_settings(sqlite_url(tmp_path), tmp_path, **EVENT_SETTINGS))
    upgrade(c.db.engine)
    try:
        yield create_app(container=c).test_client()
    finally:
        c.close()


def register(api: FlaskClient, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    r = api.post("/v1/endpoints", json={"url": receiver.url, **extra}, headers=AUTH)
    assert r.status_code == 201, r.get_json()
    body: dict[str, Any] = r.get_json()
    receiver.secret = body["secret"]
    return body


def new_job(c: Container) -> str:
    job_id = records.new_job_id()
    with c.db.transaction() as session:
        session.add(
            Job(
                id=job_id,
                track_id=records.new_track_id(),
                endpoint="modelslab/text2img",
                status=JobStatus.QUEUED,
                params={"prompt": "a cat"},
                meta={"order": 7},
            )
        )
    return job_id


def move(c: Container, job_id: str, *statuses: JobStatus) -> None:
    for status in statuses:
        with c.db.transaction() as session:
            job = records.get_job(session, job_id, for_update=True)
            if status is JobStatus.FAILED:
                records.fail(job, "provider_failed", "the provider said no")
            else:
                assert records.advance(job, status)
                if status is JobStatus.ARCHIVED:
                    job.manifest_key = f"2026/11/23/{job_id}/manifest.json"
                    job.manifest_sha256 = "ab" * 32


def drain(c: Container, rounds: int = 60, pause: float = 0.05) -> None:
    """Run the worker until no delivery task is queued or running."""
    worker = c.worker(concurrency=4)
    for _ in range(rounds):
        worker.run_once()
        with c.db.transaction() as session:
            live = session.execute(
                select(func.count())
                .select_from(Task)
                .where(Task.kind == TaskKind.DELIVER_EVENT, Task.status.in_(["queued", "running"]))
            ).scalar_one()
        if not live:
            return
        time.sleep(pause)


def deliveries(api: FlaskClient, event_id: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/events/{event_id}/deliveries", headers=AUTH)
    assert r.status_code == 200
    return r.get_json()["deliveries"]  # type: ignore[no-any-return]


def test_job_events_verify_with_standardwebhooks(
    api: FlaskClient, events_container: Container
) -> None:
    c = events_container
    rx = start_receiver()
    register(api, rx)
    job_id = new_job(c)
    move(c, job_id, JobStatus.SUBMITTED, JobStatus.PROCESSING, JobStatus.ARCHIVING)
    move(c, job_id, JobStatus.ARCHIVED)
    drain(c)
    got = rx.wait_for(2)
    assert all(g.error is None and g.verified is not None for g in got), [g.error for g in got]
    types = sorted(g.verified["type"] for g in got)
    assert types == ["job.archived", "job.submitted"]
    archived = next(g for g in got if g.verified["type"] == "job.archived")
    assert archived.headers["Content-Type"] == "application/json"
    assert archived.headers["User-Agent"].startswith("genvault/")
    data = archived.verified["data"]
    # The job exactly as GET /v1/jobs/{id} shows it, plus the manifest's digest.
    shown = api.get(f"/v1/jobs/{job_id}", headers=AUTH).get_json()
    assert {k: v for k, v in data.items() if k != "manifest_sha256"} == shown
    assert data["manifest_sha256"] == "ab" * 32
    assert data["manifest_key"].endswith("manifest.json")
    # webhook-id is the event id; the event and its delivery are visible through the API.
    events = api.get(f"/v1/events?job_id={job_id}", headers=AUTH).get_json()["events"]
    assert [e["type"] for e in events] == ["job.archived", "job.submitted"]
    assert archived.headers["webhook-id"] == events[0]["id"]
    [delivery] = deliveries(api, events[0]["id"])
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"][0]["response_status"] == 204


def test_outbox_rollback_leaves_no_event(events_container: Container, api: FlaskClient) -> None:
    c = events_container
    register(api, start_receiver())
    job_id = new_job(c)

    class Boom(Exception):
        pass

    seen_inside: list[int] = []

    def fail_then_crash() -> None:
        with c.db.transaction() as session:
            records.fail(records.get_job(session, job_id, for_update=True), "x", "y")
            session.flush()  # the event row is written here, inside the transaction
            seen_inside.append(
                session.execute(select(func.count()).select_from(Event)).scalar_one()
            )
            raise Boom

    with pytest.raises(Boom):
        fail_then_crash()
    assert seen_inside == [1]
    with c.db.transaction() as session:
        assert session.execute(select(func.count()).select_from(Event)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(EventDelivery)).scalar_one() == 0
        assert records.get_job(session, job_id).status is JobStatus.QUEUED
    move(c, job_id, JobStatus.FAILED)
    with c.db.transaction() as session:
        [event] = session.execute(select(Event)).scalars()
        assert event.type == "job.failed"
        assert event.data["error"] == {"code": "provider_failed", "message": "the provider said no"}
        assert session.execute(select(func.count()).select_from(EventDelivery)).scalar_one() == 1


def test_failing_receiver_retries_then_recover_sends_again(
    events_container: Container, api: FlaskClient
) -> None:
    c = events_container
    rx = start_receiver()
    rx.status = 500
    endpoint = register(api, rx)
    job_id = new_job(c)
    move(c, job_id, JobStatus.FAILED)
    drain(c)
    got = rx.wait_for(3)  # the first attempt and the schedule's two retries
    assert len({g.headers["webhook-id"] for g in got}) == 1
    event_id = got[0].headers["webhook-id"]
    [delivery] = deliveries(api, event_id)
    assert delivery["status"] == "failed"
    assert [a["response_status"] for a in delivery["attempts"]] == [500, 500, 500]

    rx.status = 200
    since = (utcnow() - timedelta(minutes=5)).isoformat()
    r = api.post(f"/v1/endpoints/{endpoint['id']}/recover", json={"since": since}, headers=AUTH)
    assert r.status_code == 202
    assert r.get_json()["deliveries"] == 1
    drain(c)
    got = rx.wait_for(4)
    assert got[-1].headers["webhook-id"] == event_id and got[-1].verified is not None
    assert deliveries(api, event_id)[0]["status"] == "succeeded"


def test_redirect_is_a_failed_attempt_and_not_followed(
    events_container: Container, api: FlaskClient
) -> None:
    c = events_container
    target = start_receiver()
    rx = start_receiver()
    rx.status = 307
    rx.extra_headers = {"Location": target.url}
    register(api, rx)
    move(c, new_job(c), JobStatus.FAILED)
    drain(c)
    assert len(rx.wait_for(3)) == 3
    assert target.received == []
    with c.db.transaction() as session:
        [delivery] = session.execute(select(EventDelivery)).scalars()
        assert delivery.status == "failed"


def test_410_disables_the_endpoint_and_tells_the_others(
    events_container: Container, api: FlaskClient
) -> None:
    c = events_container
    gone, other = start_receiver(), start_receiver()
    gone.status = 410
    gone_ep = register(api, gone)
    register(api, other)
    move(c, new_job(c), JobStatus.FAILED)
    drain(c)
    assert len(gone.wait_for(1)) == 1  # no retry after 410
    got = other.wait_for(2)
    kinds = sorted(g.verified["type"] for g in got)
    assert kinds == ["endpoint.disabled", "job.failed"]
    disabled = next(g.verified for g in got if g.verified["type"] == "endpoint.disabled")
    assert disabled["data"]["endpoint_id"] == gone_ep["id"]
    shown = api.get(f"/v1/endpoints/{gone_ep['id']}", headers=AUTH).get_json()
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]
    assert len(gone.received) == 1


def test_rotation_signs_with_both_secrets_then_only_the_new(
    events_container: Container, api: FlaskClient
) -> None:
    c = events_container
    rx = start_receiver()
    endpoint = register(api, rx)
    old = endpoint["secret"]
    r = api.post(f"/v1/endpoints/{endpoint['id']}/rotate-secret", headers=AUTH)
    new = r.get_json()["secret"]
    assert new != old and new.startswith("whsec_")
    assert api.get(f"/v1/endpoints/{endpoint['id']}/secret", headers=AUTH).get_json() == {
        "secret": new
    }
    move(c, new_job(c), JobStatus.FAILED)
    drain(c)
    [first] = rx.wait_for(1)
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(first.body, first.headers)
    Webhook(new).verify(first.body, first.headers)

    # The overlap ends: only the new secret signs.
    with c.db.transaction() as session:
        session.execute(
            update(EventEndpoint).values(previous_secret_until=utcnow() - timedelta(seconds=1))
        )
    move(c, new_job(c), JobStatus.FAILED)
    drain(c)
    second = rx.wait_for(2)[1]
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    Webhook(new).verify(second.body, second.headers)
    with pytest.raises(Exception, match="signature"):
        Webhook(old).verify(second.body, second.headers)


def test_resend_keeps_the_event_id(events_container: Container, api: FlaskClient) -> None:
    c = events_container
    rx = start_receiver()
    endpoint = register(api, rx)
    move(c, new_job(c), JobStatus.FAILED)
    drain(c)
    [first] = rx.wait_for(1)
    event_id = first.headers["webhook-id"]
    r = api.post(
        f"/v1/events/{event_id}/resend", json={"endpoint_id": endpoint["id"]}, headers=AUTH
    )
    assert r.status_code == 202
    drain(c)
    second = rx.wait_for(2)[1]
    assert second.headers["webhook-id"] == event_id
    assert second.verified == first.verified
    assert second.headers["webhook-timestamp"] >= first.headers["webhook-timestamp"]


def test_retry_after_is_honoured_up_to_the_longest_wait(
    events_container: Container, api: FlaskClient
) -> None:
    c = events_container
    rx = start_receiver()
    rx.status = 503
    rx.extra_headers = {"Retry-After": "3600"}
    register(api, rx)
    move(c, new_job(c), JobStatus.FAILED)
    c.worker(concurrency=1).run_once()
    rx.wait_for(1)
    with c.db.transaction() as session:
        [delivery] = session.execute(select(EventDelivery)).scalars()
        [task] = session.execute(select(Task).where(Task.kind == TaskKind.DELIVER_EVENT)).scalars()
    assert delivery.status == "pending"
    assert delivery.next_attempt_at is not None
    # Capped at the schedule's longest wait (0.1 s), not an hour. The gap also holds the
    # two transactions that record the attempt and reschedule the task: 0.6 s once in CI
    # under the parallel suite, so the bound is seconds, still far under Retry-After's hour.
    wait = (task.run_after - delivery.updated_at).total_seconds()
    assert 0.05 <= wait <= 5


def test_hanging_endpoint_does_not_hold_back_the_others(
    events_container: Container, api: FlaskClient
) -> None:
    c = events_container
    slow, fast = start_receiver(), start_receiver()
    slow.hang = 30  # longer than the 2 s timeout: every attempt times out
    register(api, slow)
    register(api, fast)
    for _ in range(6):
        move(c, new_job(c), JobStatus.FAILED)
    worker = c.worker(concurrency=3)
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        fast.wait_for(6, timeout=8)
        took = time.monotonic() - started
    finally:
        worker.stop()
        thread.join(timeout=10)
    print(
        f"fast receiver had all 6 after {took:.2f} s",
        [round(r.at - started, 2) for r in fast.received],
    )
    assert took < 4, took
    # Per-endpoint concurrency is 1: the hanging receiver never has two attempts open at once,
    # so its attempts arrive at least one timeout (2 s) apart.
    arrivals = [r.at for r in slow.received]
    assert arrivals
    assert all(b - a >= 1.9 for a, b in itertools.pairwise(arrivals)), arrivals
    assert all(g.verified is not None for g in fast.received)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://example.com/hook", "scheme"),
        ("https://user:pw@example.com/hook", "userinfo"),
        ("http://10.1.2.3/hook", "private-address"),
        ("http://169.254.169.254/latest", "cloud-metadata"),
        ("http://[::1]:8080/hook", "loopback"),
    ],
)
def test_refused_urls_are_422_naming_the_rule(sqlite_api: FlaskClient, url: str, rule: str) -> None:
    r = sqlite_api.post("/v1/endpoints", json={"url": url}, headers=AUTH)
    assert r.status_code == 422, r.get_json()
    error = r.get_json()["error"]
    assert error["errors"][0]["field"] == "url"
    assert rule in error["message"] or rule in error["errors"][0]["message"]


def test_endpoint_crud_never_lists_secrets(sqlite_api: FlaskClient) -> None:
    api = sqlite_api
    rx = start_receiver()
    created = register(api, rx, event_types=["job.archived"], description="crm")
    assert created["secret"].startswith("whsec_")
    listed = api.get("/v1/endpoints", headers=AUTH).get_json()["endpoints"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0]
    r = api.patch(
        f"/v1/endpoints/{created['id']}",
        json={"enabled": False, "event_types": ["job.failed", "job.archived"]},
        headers=AUTH,
    )
    assert r.status_code == 200
    assert r.get_json()["enabled"] is False
    assert r.get_json()["event_types"] == ["job.failed", "job.archived"]
    bad = api.patch(f"/v1/endpoints/{created['id']}", json={"event_types": ["nope"]}, headers=AUTH)
    assert bad.status_code == 422
    assert api.delete(f"/v1/endpoints/{created['id']}", headers=AUTH).status_code == 204
    assert api.get(f"/v1/endpoints/{created['id']}", headers=AUTH).status_code == 404
    assert api.get("/v1/endpoints", headers=AUTH).status_code == 200
    assert api.get("/v1/endpoints").status_code == 401


def test_event_type_filter_and_metrics(events_container: Container, api: FlaskClient) -> None:
    c = events_container
    archived_only, everything = start_receiver(), start_receiver()
    register(api, archived_only, event_types=["job.archived"])
    register(api, everything)
    job_id = new_job(c)
    move(c, job_id, JobStatus.FAILED)
    with c.db.transaction() as session:
        assert session.execute(select(func.count()).select_from(EventDelivery)).scalar_one() == 1
    text = api.get("/metrics").get_data(as_text=True)
    assert "genvault_event_deliveries_pending 1.0" in text
    drain(c)
    everything.wait_for(1)
    assert archived_only.received == []
    text = api.get("/metrics").get_data(as_text=True)
    assert "genvault_event_deliveries_pending 0.0" in text
    assert 'genvault_event_deliveries_total{outcome="succeeded"}' in text
    assert "genvault_event_attempt_seconds_bucket" in text
    digest = hashlib.sha256(everything.received[0].body).hexdigest()
    assert len(digest) == 64


@pytest.mark.event_settings(events_retry_schedule="0.3,0.3,0.3", events_disable_after_seconds=0.2)
def test_endpoint_failing_too_long_is_disabled(
    events_container: Container, api: FlaskClient
) -> None:
    c = events_container
    broken, other = start_receiver(), start_receiver()
    broken.status = 500
    broken_ep = register(api, broken)
    register(api, other, event_types=["endpoint.disabled"])
    move(c, new_job(c), JobStatus.FAILED)
    drain(c)
    # Attempt 1 starts the clock; attempt 2, 0.3 s later, is past 0.2 s: disabled, no third.
    assert len(broken.wait_for(2)) == 2
    [notice] = other.wait_for(1)
    assert notice.verified["type"] == "endpoint.disabled"
    assert notice.verified["data"]["endpoint_id"] == broken_ep["id"]
    assert "no successful delivery" in notice.verified["data"]["reason"]
    shown = api.get(f"/v1/endpoints/{broken_ep['id']}", headers=AUTH).get_json()
    assert shown["enabled"] is False
    time.sleep(0.4)
    assert len(broken.received) == 2
