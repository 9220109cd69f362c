"""No 5xx from any body or parameter, on SQLite and PostgreSQL: a clear 4xx, nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.db.models import Callback, Job, Task
from service.events import endpoints, outbox
from service.events.types import EventType
from service.security.tokens import webhook_token
from service.wiring import Container
from tests.support.app import AUTH, SECRET

TEXT2IMG = '{"endpoint": "modelslab/text2img", "params": {"model_id": "flux", "prompt": "p"}'


def _counts(container: Container) -> tuple[int, int, int]:
    with container.db.transaction() as s:
        return tuple(  # type: ignore[return-value]
            s.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (Job, Callback, Task)
        )


def _post_job(client: FlaskClient, raw: bytes | str, **headers: str) -> Any:
    return client.post(
        "/v1/jobs", data=raw, content_type="application/json", headers={**AUTH, **headers}
    )


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ("1e999", "too large"),
        ('{"deep": ' * 900 + "1" + "}" * 900, "deeper than"),
    ],
)
def test_job_bodies_that_json_cannot_hold_get_422(
    client: FlaskClient, container: Container, metadata: str, problem: str
) -> None:
    before = _counts(container)
    answer = _post_job(client, TEXT2IMG + f', "metadata": {{"x": {metadata}}}}}')
    assert answer.status_code == 422, answer.get_data(as_text=True)
    (error,) = answer.get_json()["error"]["errors"]
    assert error["field"] == "body" and problem in error["message"]
    assert _counts(container) == before


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"status": "success", "output": [NaN]}', "NaN"),
        (b'{"status": "success", "eta": 1e999}', "too large"),
        (b'{"a": ' * 900 + b"1" + b"}" * 900, "deeper than"),
        (b"[" * 100_000, "deeper than"),
    ],
)
def test_webhook_bodies_that_json_cannot_hold_get_400(
    client: FlaskClient, container: Container, body: bytes, problem: str
) -> None:
    job = _post_job(client, TEXT2IMG + "}").get_json()
    before = _counts(container)
    token = webhook_token(SECRET.encode(), "modelslab", job["track_id"])
    answer = client.post(
        f"/webhooks/modelslab/{job['track_id']}?token={token}",
        data=body,
        content_type="application/json",
    )
    assert answer.status_code == 400, answer.get_data(as_text=True)
    assert answer.get_json()["error"]["code"] == "bad_json"
    assert problem in answer.get_json()["error"]["message"]
    assert _counts(container) == before


CONTROL_CHARACTERS = ("\x00", "\x01", "\x1b", "\x7f", "\x85")


@pytest.mark.parametrize(
    "where", ["job_id", "retry", "audit", "cursor", "status", "endpoint", "idempotency_key"]
)
def test_control_characters_in_ids_cursors_filters_and_keys_get_422(
    client: FlaskClient, container: Container, where: str
) -> None:
    job = _post_job(client, TEXT2IMG + "}").get_json()
    before = _counts(container)
    expected = {"job_id": "job_id", "retry": "job_id", "audit": "job_id"}
    field = expected.get(where, "Idempotency-Key" if where == "idempotency_key" else where)
    for char in CONTROL_CHARACTERS:
        bad = f"{job['id']}{char}"
        if where == "job_id":
            answer = client.get(f"/v1/jobs/{bad}", headers=AUTH)
        elif where == "retry":
            answer = client.post(f"/v1/jobs/{bad}/retry", headers=AUTH)
        elif where == "audit":
            answer = client.get(f"/v1/jobs/{bad}/audit", headers=AUTH)
        elif where in {"cursor", "status", "endpoint"}:
            answer = client.get("/v1/jobs", query_string={where: bad}, headers=AUTH)
        else:
            answer = _post_job(client, TEXT2IMG + "}", **{"Idempotency-Key": f"k{char}1"})
        assert answer.status_code == 422, (repr(char), answer.get_data(as_text=True))
        assert [e["field"] for e in answer.get_json()["error"]["errors"]] == [field]
    assert _counts(container) == before


def test_a_nul_in_a_webhook_path_is_a_4xx(client: FlaskClient, container: Container) -> None:
    job = _post_job(client, TEXT2IMG + "}").get_json()
    track = job["track_id"] + "\x00"
    # Even with a token minted for that very track id, the database never sees the NUL.
    token = webhook_token(SECRET.encode(), "modelslab", track)
    answer = client.post(
        f"/webhooks/modelslab/{track}?token={token}",
        data=json.dumps({"status": "success"}),
        content_type="application/json",
    )
    assert answer.status_code == 422
    assert answer.get_json()["error"]["errors"][0]["field"] == "track_id"


def test_control_characters_inside_json_strings_are_data(client: FlaskClient) -> None:
    # Escaped NUL inside a JSON string is legal JSON; the json column stores it as text.
    answer = _post_job(client, TEXT2IMG + ', "metadata": {"note": "a\\u0000b\\u001b"}}')
    assert answer.status_code == 202, answer.get_data(as_text=True)
    shown = client.get(f"/v1/jobs/{answer.get_json()['id']}", headers=AUTH).get_json()
    assert shown["metadata"] == {"note": "a\x00b\x1b"}


def _endpoint_and_event(container: Container) -> tuple[str, str]:
    """An endpoint and an event with its delivery, written directly (no URL lookup)."""
    with container.db.transaction() as s:
        endpoint = endpoints.create(s, "default", "https://receiver.example/hook", None, None)
    with container.db.transaction() as s:
        event = outbox.emit(
            s, EventType.AUDIT_FAILED, {"job_id": "j"}, project="default", job_id="j"
        )
    return endpoint.id, event.id


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e999", '{"a": ' * 900 + "1" + "}" * 900])
def test_endpoint_and_event_bodies_that_json_cannot_hold_get_422(
    client: FlaskClient, container: Container, value: str
) -> None:
    endpoint_id, event_id = _endpoint_and_event(container)
    for method, path, body in [
        ("post", "/v1/endpoints", f'{{"url": "https://receiver.example/", "x": {value}}}'),
        ("patch", f"/v1/endpoints/{endpoint_id}", f'{{"enabled": {value}}}'),
        ("post", f"/v1/endpoints/{endpoint_id}/recover", f'{{"since": {value}}}'),
        ("post", f"/v1/events/{event_id}/resend", f'{{"endpoint_id": {value}}}'),
    ]:
        answer = getattr(client, method)(
            path, data=body, content_type="application/json", headers=AUTH
        )
        assert answer.status_code == 422, (path, answer.get_data(as_text=True))
        assert [e["field"] for e in answer.get_json()["error"]["errors"]] == ["body"]


def test_control_characters_in_endpoint_and_event_ids_and_filters_get_422(
    client: FlaskClient, container: Container
) -> None:
    endpoint_id, event_id = _endpoint_and_event(container)
    for char in CONTROL_CHARACTERS:
        for path, field in [
            (f"/v1/endpoints/{endpoint_id}{char}", "endpoint_id"),
            (f"/v1/endpoints/{endpoint_id}{char}/secret", "endpoint_id"),
            (f"/v1/events/{event_id}{char}", "event_id"),
            (f"/v1/events/{event_id}{char}/deliveries", "event_id"),
            (f"/v1/events?cursor={event_id}{char}", "cursor"),
            (f"/v1/events?job_id=j{char}", "job_id"),
            (f"/v1/signing-key?x={char}", "x"),
        ]:
            answer = client.get(path, headers=AUTH)
            assert answer.status_code == 422, (path, repr(char), answer.get_data(as_text=True))
            assert [e["field"] for e in answer.get_json()["error"]["errors"]] == [field]
        resend = client.post(
            f"/v1/events/{event_id}/resend", json={"endpoint_id": f"ep{char}"}, headers=AUTH
        )
        assert resend.status_code == 422, (repr(char), resend.get_data(as_text=True))


def test_endpoint_values_the_database_cannot_hold_get_422(
    client: FlaskClient, container: Container
) -> None:
    endpoint_id, event_id = _endpoint_and_event(container)
    url = f"/v1/endpoints/{endpoint_id}"
    nul = client.patch(url, json={"description": "a\x00b"}, headers=AUTH)
    assert nul.status_code == 422, nul.get_data(as_text=True)
    assert nul.get_json()["error"]["errors"][0]["field"] == "description"
    # Nothing else in a description is refused.
    ok = client.patch(url, json={"description": "line\nnext\ttab"}, headers=AUTH)
    assert ok.status_code == 200 and ok.get_json()["description"] == "line\nnext\ttab"
    far = client.post(f"{url}/recover", json={"since": "9999-12-31T23:59:59-05:00"}, headers=AUTH)
    assert far.status_code == 422, far.get_data(as_text=True)
    assert far.get_json()["error"]["errors"][0]["field"] == "since"
    naive = client.post(f"{url}/recover", json={"since": "2020-01-01T00:00:00"}, headers=AUTH)
    assert naive.status_code == 202 and naive.get_json()["deliveries"] == 0
    # The resend body is optional; when there is one, it must be JSON.
    assert client.post(f"/v1/events/{event_id}/resend", headers=AUTH).status_code == 202
    text = client.post(
        f"/v1/events/{event_id}/resend", data="x", content_type="text/plain", headers=AUTH
    )
    assert text.status_code == 422, text.get_data(as_text=True)
