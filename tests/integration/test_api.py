"""The HTTP contract through Flask's test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.db.models import Callback, Job, Task
from service.security.tokens import webhook_token
from service.wiring import Container
from tests.support.app import AUTH, SECRET, apply_callbacks

TEXT2IMG = {"endpoint": "modelslab/text2img", "params": {"model_id": "flux", "prompt": "a fox"}}


def _submit(client: FlaskClient, body: dict[str, Any] = TEXT2IMG, **headers: str) -> Any:
    return client.post("/v1/jobs", json=body, headers={**AUTH, **headers})


def _hook(
    client: FlaskClient, track_id: str, body: bytes | dict[str, Any], token: str | None = None
) -> Any:
    token = token if token is not None else webhook_token(SECRET.encode(), "modelslab", track_id)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        f"/webhooks/modelslab/{track_id}?token={token}", data=data, content_type="application/json"
    )


def _counts(container: Container) -> tuple[int, int, int]:
    with container.db.transaction() as s:
        return (
            s.execute(select(func.count()).select_from(Job)).scalar_one(),
            s.execute(select(func.count()).select_from(Callback)).scalar_one(),
            s.execute(select(func.count()).select_from(Task)).scalar_one(),
        )


def test_submit_returns_202_and_the_job_json_of_the_contract(client: FlaskClient) -> None:
    r = _submit(client, {**TEXT2IMG, "metadata": {"user": "u1"}})
    assert r.status_code == 202
    job = r.get_json()
    assert set(job) >= {
        "id",
        "track_id",
        "endpoint",
        "status",
        "created_at",
        "updated_at",
        "provider_request_id",
        "error",
        "metadata",
        "assets",
        "manifest_key",
    }
    assert job["status"] == "queued"
    assert job["metadata"] == {"user": "u1"}
    assert job["assets"] == [] and job["error"] is None
    shown = client.get(f"/v1/jobs/{job['id']}", headers=AUTH).get_json()
    assert shown["id"] == job["id"] and shown["track_id"] == job["track_id"]


def test_requests_without_a_valid_token_get_401(client: FlaskClient) -> None:
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert (
        client.post("/v1/jobs", json=TEXT2IMG, headers={"Authorization": "Basic x"}).status_code
        == 401
    )


def test_idempotency_key_returns_the_first_job(client: FlaskClient, container: Container) -> None:
    first = _submit(client, **{"Idempotency-Key": "k-1"})
    again = _submit(client, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    other = _submit(
        client,
        {**TEXT2IMG, "params": {"model_id": "flux", "prompt": "a cat"}},
        **{"Idempotency-Key": "k-1"},
    )
    assert other.status_code == 409
    assert _counts(container)[0] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "endpoint": "modelslab/text2img",
                "params": {"model_id": "m", "prompt": "p", "width": 4096},
            },
            "params.width",
        ),
        (
            {
                "endpoint": "modelslab/text2img",
                "params": {"model_id": "m", "prompt": "p", "samples": 9},
            },
            "params.samples",
        ),
        (
            {
                "endpoint": "modelslab/text2img",
                "params": {"model_id": "m", "prompt": "p", "key": "x"},
            },
            "params.key",
        ),
        (
            {
                "endpoint": "modelslab/text2img",
                "params": {"model_id": "m", "prompt": "p", "webhook": "http://x"},
            },
            "params.webhook",
        ),
        ({"endpoint": "modelslab/text2img", "params": {"model_id": "m"}}, "params.prompt"),
        ({"endpoint": "nope/nope", "params": {}}, "endpoint"),
        ({"params": {}}, "endpoint"),
        ({"endpoint": "modelslab/text2img", "params": "x"}, "params"),
    ],
)
def test_invalid_jobs_get_422_with_one_entry_per_bad_field_and_create_nothing(
    client: FlaskClient, container: Container, body: dict[str, Any], field: str
) -> None:
    r = _submit(client, body)
    assert r.status_code == 422
    fields = [e["field"] for e in r.get_json()["error"]["errors"]]
    assert field in fields
    assert _counts(container) == (0, 0, 0)


def test_list_filters_and_pages_with_a_cursor(client: FlaskClient) -> None:
    ids = [_submit(client).get_json()["id"] for _ in range(5)]
    page = client.get("/v1/jobs?limit=2", headers=AUTH).get_json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    rest = client.get(f"/v1/jobs?limit=10&cursor={page['next_cursor']}", headers=AUTH).get_json()
    assert [j["id"] for j in rest["jobs"]] == ids[::-1][2:]
    assert rest["next_cursor"] is None
    assert client.get("/v1/jobs?status=archived", headers=AUTH).get_json()["jobs"] == []
    assert client.get("/v1/jobs?status=bogus", headers=AUTH).status_code == 422
    assert client.get("/v1/jobs?limit=0", headers=AUTH).status_code == 422


SUCCESS = {
    "status": "success",
    "id": 81443063,
    "generationTime": 0.65,
    "output": ["https://pub-3626123a908346a7a8be8d9295f44e26.r2.dev/generations/x-0.png"],
    "meta": {"seed": 1, "width": 512, "height": 512},
}


def test_a_callback_is_recorded_and_queues_exactly_one_archive(
    client: FlaskClient, container: Container
) -> None:
    job = _submit(client).get_json()
    body = {**SUCCESS, "track_id": job["track_id"]}
    raw = json.dumps(body).encode()
    # The same callback ten times, six of them at once: one is news, nine are duplicates.
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _hook(client, job["track_id"], raw), range(6)))
    answers += [_hook(client, job["track_id"], raw) for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 10
    outcomes = sorted(a.get_json()["status"] for a in answers)
    assert outcomes == ["accepted"] + ["duplicate"] * 9
    # The request stored the callback, pending; the worker applies it.
    assert apply_callbacks(container) == 1
    with container.db.transaction() as s:
        kinds = sorted(s.execute(select(Task.kind)).scalars())
        stored = s.execute(select(Job).where(Job.id == job["id"])).scalar_one()
    assert kinds == ["archive", "submit"]
    assert stored.status == "archiving"
    assert stored.provider_request_id == "81443063"


def test_a_callback_that_beats_the_submit_answer_still_works(
    client: FlaskClient, container: Container
) -> None:
    # No worker has run: the job is still `queued` when the provider's webhook arrives.
    job = _submit(client).get_json()
    assert (
        _hook(client, job["track_id"], {**SUCCESS, "track_id": job["track_id"]}).status_code == 200
    )
    assert apply_callbacks(container) == 1
    assert client.get(f"/v1/jobs/{job['id']}", headers=AUTH).get_json()["status"] == "archiving"


def test_a_late_failed_callback_never_moves_a_job_back(
    client: FlaskClient, container: Container
) -> None:
    job = _submit(client).get_json()
    _hook(client, job["track_id"], {**SUCCESS, "track_id": job["track_id"]})
    assert apply_callbacks(container) == 1
    late = {
        "status": "failed",
        "id": 81443063,
        "message": "Failed, Try Again",
        "track_id": job["track_id"],
    }
    assert _hook(client, job["track_id"], late).status_code == 200
    assert apply_callbacks(container) == 1
    assert client.get(f"/v1/jobs/{job['id']}", headers=AUTH).get_json()["status"] == "archiving"


def test_a_failed_callback_fails_the_job_with_the_provider_message(
    client: FlaskClient, container: Container
) -> None:
    job = _submit(client).get_json()
    body = {
        "status": "failed",
        "id": 5,
        "messege": {"prompt": ["The prompt field is required."]},
        "track_id": job["track_id"],
    }
    assert _hook(client, job["track_id"], body).status_code == 200
    assert apply_callbacks(container) == 1
    shown = client.get(f"/v1/jobs/{job['id']}", headers=AUTH).get_json()
    assert shown["status"] == "failed"
    assert "prompt" in shown["error"]["message"]


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("wrong-token", 401),
        ("no-token", 401),
        ("unknown-track", 404),
        ("oversized", 413),
        ("not-json", 400),
        ("json-array", 400),
        ("other-provider-token", 401),
        ("provider-without-webhooks", 404),
    ],
)
def test_bad_callbacks_get_their_status_and_change_nothing(
    client: FlaskClient, container: Container, case: str, status: int
) -> None:
    job = _submit(client).get_json()
    track = job["track_id"]
    before = _counts(container)
    good = json.dumps({**SUCCESS, "track_id": track}).encode()
    if case == "wrong-token":
        r = _hook(client, track, good, token="A" * 43)
    elif case == "no-token":
        r = client.post(f"/webhooks/modelslab/{track}", data=good, content_type="application/json")
    elif case == "unknown-track":
        r = _hook(client, "f" * 32, good)
    elif case == "oversized":
        r = _hook(
            client, track, b'{"pad": "' + b"x" * (container.settings.webhook_max_bytes + 10) + b'"}'
        )
    elif case == "not-json":
        r = _hook(client, track, b"<html>not json</html>")
    elif case == "json-array":
        r = _hook(client, track, b"[1, 2]")
    elif case == "provider-without-webhooks":
        # A genuine token, but AI/ML API answers synchronously and never calls back.
        token = webhook_token(SECRET.encode(), "aimlapi", track)
        r = client.post(f"/webhooks/aimlapi/{track}?token={token}", data=good)
    else:
        token = webhook_token(SECRET.encode(), "aimlapi", track)
        r = client.post(f"/webhooks/modelslab/{track}?token={token}", data=good)
    assert r.status_code == status, r.get_data(as_text=True)
    assert "error" in r.get_json()
    assert _counts(container) == before
    assert client.get(f"/v1/jobs/{job['id']}", headers=AUTH).get_json()["status"] == "queued"


def test_retry_refuses_a_job_that_has_not_failed(client: FlaskClient) -> None:
    job = _submit(client).get_json()
    assert client.post(f"/v1/jobs/{job['id']}/retry", headers=AUTH).status_code == 409


def test_ops_endpoints(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {
        "database": "ok",
        "archive": "ok",
    }
    _submit(client)
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'genvault_jobs_created_total{endpoint="modelslab/text2img"}' in metrics
    spec = client.get("/openapi.json").get_json()
    assert "/v1/jobs" in spec["paths"]
    assert client.get("/nope").status_code == 404
