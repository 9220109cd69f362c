"""Endpoint types SQS, SNS and EventBridge against moto's server (one port serves all three),
and formats, links and sealed credentials on every transport including HTTP.

Each delivery runs the real delivery task on a real event; the message is consumed from the
queue and verified with the stock ``standardwebhooks`` package from its transport headers.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from service.app import create_app
from service.db.migrate import upgrade
from service.db.models import Asset, AuditEntry, DeliveryAttempt, EventDelivery, EventEndpoint
from service.db.types import utcnow
from service.jobs.states import JobStatus
from service.wiring import Container, build
from tests.integration.test_events import EVENT_SETTINGS, drain, move, new_job
from tests.support.app import AUTH, make_settings
from tests.support.db import sqlite_url
from tests.support.receivers import start_receiver
from tests.support.s3 import free_port

pytestmark = pytest.mark.timeout(90)

REGION = "us-east-1"
# Fake keys: moto takes any; the test checks that neither ever shows.
KEY_ID = "AKIAGENVAULTTESTKEY1"
SECRET = "genvault-test-secret-" + uuid.uuid4().hex


@pytest.fixture
def moto(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return s3_endpoint


@pytest.fixture
def container(database_url: str, tmp_path: Path) -> Iterator[Container]:
    c = build(make_settings(database_url, tmp_path, **EVENT_SETTINGS))
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def api(container: Container) -> FlaskClient:
    return create_app(container=container).test_client()


def aws(service: str, moto: str) -> Any:
    return boto3.client(service, endpoint_url=moto, region_name=REGION)


def new_queue(moto: str, *, fifo: bool = False) -> tuple[str, str]:
    sqs = aws("sqs", moto)
    name = f"gv-{uuid.uuid4().hex[:12]}" + (".fifo" if fifo else "")
    attrs = {"FifoQueue": "true"} if fifo else {}
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def receive(moto: str, queue_url: str, count: int = 1) -> list[dict[str, Any]]:
    sqs = aws("sqs", moto)
    got: list[dict[str, Any]] = []
    for _ in range(20):
        answer = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        got.extend(answer.get("Messages", []))
        if len(got) >= count:
            return got
    raise AssertionError(f"got {len(got)} messages, wanted {count}")


def register(api: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/v1/endpoints", json=body, headers=AUTH)
    assert r.status_code == 201, r.get_json()
    return r.get_json()  # type: ignore[no-any-return]


def archived_job(c: Container) -> str:
    job_id = new_job(c)
    move(c, job_id, JobStatus.SUBMITTED, JobStatus.PROCESSING, JobStatus.ARCHIVING)
    move(c, job_id, JobStatus.ARCHIVED)
    return job_id


def attrs(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}


def attempts(c: Container, endpoint_id: str) -> tuple[list[EventDelivery], list[DeliveryAttempt]]:
    with c.db.transaction() as session:
        found = list(
            session.execute(
                select(EventDelivery).where(EventDelivery.endpoint_id == endpoint_id)
            ).scalars()
        )
        tried = list(
            session.execute(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_([d.id for d in found]))
                .order_by(DeliveryAttempt.id)
            ).scalars()
        )
        session.expunge_all()
    return found, tried


def sqs_body(queue_url: str, moto: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "sqs",
        "config": {"queue_url": queue_url, "region": REGION, "endpoint_url": moto},
        "credentials": {"access_key_id": KEY_ID, "secret_access_key": SECRET},
        "event_types": ["job.archived"],
        **extra,
    }


def test_sqs_standard_queue_gets_a_verifiable_message(
    api: FlaskClient, container: Container, moto: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="service")
    queue_url, _ = new_queue(moto)
    endpoint = register(api, sqs_body(queue_url, moto))
    job_id = archived_job(container)
    drain(container)
    [message] = receive(moto, queue_url)
    headers = attrs(message)
    assert headers["event-type"] == "job.archived"
    assert headers["content-type"] == "application/json"
    body = Webhook(endpoint["secret"]).verify(message["Body"], headers)
    assert body["type"] == "job.archived"
    assert body["data"]["id"] == job_id
    [delivery], [attempt] = attempts(container, endpoint["id"])
    assert delivery.status == "succeeded"
    assert attempt.receipt == message["MessageId"]
    assert headers["webhook-id"] == delivery.event_id
    # The attempt shows through the API with the broker's receipt.
    shown = api.get(f"/v1/events/{delivery.event_id}/deliveries", headers=AUTH).get_json()
    assert shown["deliveries"][0]["attempts"][0]["receipt"] == message["MessageId"]
    assert SECRET not in caplog.text


def test_sqs_fifo_queue_groups_by_job_and_deduplicates_by_event(
    api: FlaskClient, container: Container, moto: str
) -> None:
    queue_url, _ = new_queue(moto, fifo=True)
    endpoint = register(api, sqs_body(queue_url, moto, format="cloudevents"))
    job_id = archived_job(container)
    drain(container)
    [message] = receive(moto, queue_url)
    [delivery], _ = attempts(container, endpoint["id"])
    assert message["Attributes"]["MessageGroupId"] == job_id
    assert message["Attributes"]["MessageDeduplicationId"] == delivery.event_id
    headers = attrs(message)
    assert headers["content-type"] == "application/cloudevents+json"
    body = Webhook(endpoint["secret"]).verify(message["Body"], headers)
    assert body["specversion"] == "1.0"
    assert body["type"] == "com.genvault.job.archived"
    assert body["id"] == delivery.event_id
    assert body["subject"] == job_id


def test_sns_topic_reaches_a_subscribed_queue(
    api: FlaskClient, container: Container, moto: str
) -> None:
    sns = aws("sns", moto)
    topic = sns.create_topic(Name=f"gv-{uuid.uuid4().hex[:12]}")["TopicArn"]
    queue_url, queue_arn = new_queue(moto)
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    endpoint = register(
        api,
        {
            "type": "sns",
            "config": {"topic_arn": topic, "region": REGION, "endpoint_url": moto},
            "event_types": ["job.archived"],
        },
    )
    archived_job(container)
    drain(container)
    [message] = receive(moto, queue_url)
    headers = attrs(message)
    body = Webhook(endpoint["secret"]).verify(message["Body"], headers)
    assert body["type"] == "job.archived"
    [delivery], [attempt] = attempts(container, endpoint["id"])
    assert delivery.status == "succeeded"
    assert attempt.receipt
    assert headers["webhook-id"] == delivery.event_id


def test_eventbridge_rule_delivers_the_envelope_to_a_queue(
    api: FlaskClient, container: Container, moto: str
) -> None:
    events = aws("events", moto)
    bus = f"gv-{uuid.uuid4().hex[:12]}"
    events.create_event_bus(Name=bus)
    queue_url, queue_arn = new_queue(moto)
    rule = f"gv-rule-{uuid.uuid4().hex[:8]}"
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps({"source": ["genvault"]}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])
    endpoint = register(
        api,
        {
            "type": "eventbridge",
            "config": {"event_bus_name": bus, "region": REGION, "endpoint_url": moto},
            "event_types": ["job.archived"],
        },
    )
    job_id = archived_job(container)
    drain(container)
    [message] = receive(moto, queue_url)
    event = json.loads(message["Body"])
    assert event["source"] == "genvault"
    assert event["detail-type"] == "job.archived"
    detail = event["detail"]
    body = Webhook(endpoint["secret"]).verify(detail["raw"], detail["headers"])
    assert body == detail["body"]
    assert body["data"]["id"] == job_id
    [delivery], [attempt] = attempts(container, endpoint["id"])
    assert delivery.status == "succeeded"
    assert attempt.receipt


def test_eventbridge_failed_entry_is_a_failure_not_a_success(
    api: FlaskClient, container: Container, moto: str
) -> None:
    endpoint = register(
        api,
        {
            "type": "eventbridge",
            "config": {
                "event_bus_name": "gv-missing-" + uuid.uuid4().hex[:8],
                "region": REGION,
                "endpoint_url": moto,
            },
            "event_types": ["job.archived"],
        },
    )
    archived_job(container)
    drain(container)
    [delivery], tried = attempts(container, endpoint["id"])
    assert delivery.status == "failed"
    assert tried and all(a.receipt is None for a in tried)
    assert all(
        "entry refused" in (a.error or "") or "ResourceNotFound" in (a.error or "") for a in tried
    ), [a.error for a in tried]


def test_missing_queue_is_a_configuration_error_that_disables(
    api: FlaskClient, container: Container, moto: str
) -> None:
    queue_url = f"{moto}/123456789012/gv-missing-{uuid.uuid4().hex[:8]}"
    endpoint = register(api, sqs_body(queue_url, moto))
    archived_job(container)
    drain(container)
    [delivery], tried = attempts(container, endpoint["id"])
    assert delivery.status == "failed"
    assert len(tried) == 3
    assert all((a.error or "").startswith("configuration:") for a in tried), [
        a.error for a in tried
    ]
    shown = api.get(f"/v1/endpoints/{endpoint['id']}", headers=AUTH).get_json()
    assert shown["enabled"] is False
    assert shown["disabled_reason"].startswith("configuration error, 3 attempts in a row")


def test_closed_port_is_transient_and_retried(
    api: FlaskClient, container: Container, moto: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    body = sqs_body(f"{closed}/123456789012/q", closed)
    endpoint = register(api, body)
    archived_job(container)
    drain(container)
    [delivery], tried = attempts(container, endpoint["id"])
    # The schedule (two retries) ran out: failed, but the endpoint stays on.
    assert delivery.status == "failed"
    assert len(tried) == 3
    assert all(not (a.error or "").startswith("configuration") for a in tried)
    assert all("connect" in (a.error or "") for a in tried), [a.error for a in tried]
    shown = api.get(f"/v1/endpoints/{endpoint['id']}", headers=AUTH).get_json()
    assert shown["enabled"] is True


def test_credentials_are_sealed_and_never_shown(
    api: FlaskClient, container: Container, moto: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="service")
    queue_url, _ = new_queue(moto)
    created = register(api, sqs_body(queue_url, moto))
    endpoint_id = created["id"]
    assert "credentials" not in created
    answers = [
        json.dumps(created),
        api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH).get_data(as_text=True),
        api.get("/v1/endpoints", headers=AUTH).get_data(as_text=True),
    ]
    patched = api.patch(
        f"/v1/endpoints/{endpoint_id}",
        json={"credentials": {"access_key_id": KEY_ID, "secret_access_key": SECRET + "x"}},
        headers=AUTH,
    )
    assert patched.status_code == 200, patched.get_json()
    answers.append(patched.get_data(as_text=True))
    archived_job(container)
    drain(container)
    [delivery], _ = attempts(container, endpoint_id)
    assert delivery.status == "succeeded"
    answers.append(api.get("/v1/events", headers=AUTH).get_data(as_text=True))
    answers.append(
        api.get(f"/v1/events/{delivery.event_id}/deliveries", headers=AUTH).get_data(as_text=True)
    )
    with container.db.transaction() as session:
        rows = list(session.execute(select(AuditEntry)).scalars())
        stored = session.get(EventEndpoint, endpoint_id)
        assert stored is not None
        sealed = stored.credentials or ""
        answers.extend(json.dumps(r.changes) for r in rows)
    assert {r.action for r in rows} >= {"endpoint.create", "endpoint.update"}
    for text in (*answers, sealed, caplog.text):
        assert SECRET not in text
        assert KEY_ID not in text
    assert sealed.startswith("v1.")


def test_a_private_endpoint_url_is_refused_unless_admitted(tmp_path: Path) -> None:
    c = build(make_settings(sqlite_url(tmp_path), tmp_path))
    upgrade(c.db.engine)
    try:
        client = create_app(container=c).test_client()
        r = client.post(
            "/v1/endpoints",
            json={
                "type": "sqs",
                "config": {
                    "queue_url": "http://127.0.0.1:9/123456789012/q",
                    "region": REGION,
                    "endpoint_url": "http://127.0.0.1:9",
                },
            },
            headers=AUTH,
        )
        assert r.status_code == 422
        assert [e["field"] for e in r.get_json()["error"]["errors"]] == ["config.endpoint_url"]
    finally:
        c.close()


def test_bad_fields_are_named(api: FlaskClient) -> None:
    cases = [
        ({"type": "kafka", "config": {}}, "type"),
        ({"type": "sqs", "config": {"region": REGION}}, "config.queue_url"),
        (
            {"type": "sqs", "config": {"queue_url": "https://q", "region": REGION, "nope": 1}},
            "config.nope",
        ),
        (
            {
                "type": "sns",
                "config": {"topic_arn": "arn:aws:sns:us-east-1:123456789012:t", "region": REGION},
                "credentials": {"access_key_id": KEY_ID},
            },
            "credentials.secret_access_key",
        ),
        ({"type": "sqs", "url": "https://x.example/", "config": {}}, "url"),
        ({"type": "http"}, "url"),
        ({"url": "https://x.example/", "credentials": {"password": "x"}}, "credentials"),
        ({"url": "https://x.example/", "format": "xml"}, "format"),
    ]
    for body, field_name in cases:
        r = api.post("/v1/endpoints", json=body, headers=AUTH)
        assert r.status_code == 422, (body, r.get_json())
        fields = [e["field"] for e in r.get_json()["error"]["errors"]]
        assert field_name in fields, (body, fields)


def test_endpoint_types_describe_their_fields(api: FlaskClient) -> None:
    r = api.get("/v1/endpoint-types", headers=AUTH)
    assert r.status_code == 200
    types = {t["type"]: t for t in r.get_json()["types"]}
    assert {"http", "sqs", "sns", "eventbridge"} <= set(types)
    assert [f["name"] for f in types["sqs"]["config"]] == ["region", "endpoint_url", "queue_url"]
    assert {f["name"] for f in types["sqs"]["credentials"]} == {
        "access_key_id",
        "secret_access_key",
    }
    assert types["http"]["credentials"] == []


def test_http_cloudevents_with_stable_links(api: FlaskClient, container: Container) -> None:
    rx = start_receiver()
    r = api.post(
        "/v1/endpoints",
        json={
            "url": rx.url,
            "format": "cloudevents",
            "links": "stable",
            "event_types": ["job.archived"],
        },
        headers=AUTH,
    )
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    rx.secret = created["secret"]
    assert (created["type"], created["format"], created["links"]) == (
        "http",
        "cloudevents",
        "stable",
    )
    job_id = new_job(container)
    move(container, job_id, JobStatus.SUBMITTED, JobStatus.PROCESSING, JobStatus.ARCHIVING)
    with container.db.transaction() as session:
        session.add(
            Asset(
                job_id=job_id,
                role="output",
                index=0,
                key=f"2026/11/23/{job_id}/0.png",
                source_url="https://cdn.example/0.png",
                sha256="cd" * 32,
                size=10,
                content_type="image/png",
                width=1,
                height=1,
                created_at=utcnow(),
            )
        )
    move(container, job_id, JobStatus.ARCHIVED)
    drain(container)
    [got] = rx.wait_for(1)
    assert got.error is None, got.error
    assert got.headers["Content-Type"] == "application/cloudevents+json"
    body = got.verified
    assert body["specversion"] == "1.0"
    assert body["type"] == "com.genvault.job.archived"
    assert body["subject"] == job_id
    assert body["id"] == got.headers["webhook-id"]
    assert body["datacontenttype"] == "application/json"
    data = body["data"]
    assert data["api_url"].endswith(f"/v1/jobs/{job_id}")
    [asset] = data["assets"]
    assert asset["key"] == f"2026/11/23/{job_id}/0.png"
    assert asset["url"] is None
    assert asset["uri"]


def test_a_patched_config_reopens_the_destination(
    api: FlaskClient, container: Container, moto: str
) -> None:
    first, _ = new_queue(moto)
    second, _ = new_queue(moto)
    endpoint = register(api, sqs_body(first, moto))
    archived_job(container)
    drain(container)
    assert len(receive(moto, first)) == 1
    config = {"queue_url": second, "region": REGION, "endpoint_url": moto}
    r = api.patch(f"/v1/endpoints/{endpoint['id']}", json={"config": config}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["config"] == config
    job_id = archived_job(container)
    drain(container)
    [message] = receive(moto, second)
    body = Webhook(endpoint["secret"]).verify(message["Body"], attrs(message))
    assert body["data"]["id"] == job_id
