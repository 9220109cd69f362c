"""No 5xx from any body or parameter, on SQLite and PostgreSQL: a clear 4xx, nothing stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.db.models import Callback, Job, Task
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
