"""The contract: /openapi.json against the URL map, the job JSON's shape, slim list queries."""

from __future__ import annotations

import gc
import hashlib
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pytest
from flask import Blueprint
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from sqlalchemy.orm import Session

from service.api.openapi import EXCLUDED_PREFIXES, document, openapi_path, undescribed
from service.api.schemas import JobList
from service.app import create_app
from service.db.models import Asset, Job
from service.db.types import utcnow
from service.jobs.records import new_job_id, new_track_id
from service.jobs.shape import JobOut
from service.jobs.states import JobStatus
from service.wiring import Container
from tests.support.app import AUTH

CONTRACT_PREFIXES = ("/v1/", "/webhooks/")
OPS_ROUTES = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/files/")

# Every status each operation can answer (414 comes from gunicorn, before any view; 503 from
# service.api.errors when the database is unreachable, on every operation that touches it).
# Every scoped /v1 route may answer 403 (the scope it needs is missing); creates and lists
# that act in a named project may answer 404 (a project the caller cannot see).
_SCOPED = {"401", "403", "414", "503"}
EXPECTED_STATUSES = {
    ("post", "/v1/jobs"): _SCOPED | {"200", "202", "404", "409", "413", "422"},
    ("get", "/v1/jobs"): _SCOPED | {"200", "404", "422"},
    ("get", "/v1/jobs/{job_id}"): _SCOPED | {"200", "404", "422"},
    ("delete", "/v1/jobs/{job_id}"): _SCOPED | {"200", "404", "409", "413", "422"},
    ("post", "/v1/jobs/{job_id}/retry"): _SCOPED | {"202", "404", "409", "422"},
    ("get", "/v1/jobs/{job_id}/audit"): _SCOPED | {"200", "404", "409", "422"},
    ("post", "/v1/jobs/{job_id}/audit"): _SCOPED | {"200", "404", "409", "422"},
    ("post", "/v1/endpoints"): _SCOPED | {"201", "404", "413", "422"},
    ("get", "/v1/endpoint-types"): _SCOPED | {"200"},
    ("get", "/v1/endpoints"): _SCOPED | {"200", "404", "422"},
    ("get", "/v1/endpoints/{endpoint_id}"): _SCOPED | {"200", "404", "422"},
    ("patch", "/v1/endpoints/{endpoint_id}"): _SCOPED | {"200", "404", "413", "422"},
    ("delete", "/v1/endpoints/{endpoint_id}"): _SCOPED | {"204", "404", "422"},
    ("get", "/v1/endpoints/{endpoint_id}/secret"): _SCOPED | {"200", "404", "422"},
    ("post", "/v1/endpoints/{endpoint_id}/rotate-secret"): _SCOPED | {"200", "404", "422"},
    ("post", "/v1/endpoints/{endpoint_id}/recover"): _SCOPED | {"202", "404", "413", "422"},
    ("get", "/v1/events"): _SCOPED | {"200", "404", "422"},
    ("get", "/v1/events/{event_id}"): _SCOPED | {"200", "404", "422"},
    ("get", "/v1/events/{event_id}/deliveries"): _SCOPED | {"200", "404", "422"},
    ("post", "/v1/events/{event_id}/resend"): _SCOPED | {"202", "404", "413", "422"},
    # Any valid credential: no scope to lack.
    ("get", "/v1/signing-key"): {"200", "401", "414", "422", "503"},
    ("get", "/v1/projects"): {"200", "401", "414", "503"},
    ("post", "/v1/projects"): _SCOPED | {"201", "409", "413", "422"},
    ("post", "/v1/keys"): _SCOPED | {"201", "404", "413", "422"},
    ("get", "/v1/keys"): _SCOPED | {"200", "404", "422"},
    ("delete", "/v1/keys/{key_id}"): _SCOPED | {"204", "404", "422"},
    ("get", "/v1/audit-log"): _SCOPED | {"200", "422"},
    ("post", "/webhooks/{provider}/{track_id}"): {
        "200",
        "400",
        "401",
        "404",
        "413",
        "414",
        "422",
        "503",
    },
    ("get", "/healthz"): {"200", "414"},
    ("get", "/readyz"): {"200", "414", "503"},
    ("get", "/metrics"): {"200", "414", "503"},
    ("get", "/openapi.json"): {"200", "414"},
    ("get", "/files/{key}"): {"200", "403", "404", "414"},
}


def _spec(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return answer.get_json()  # type: ignore[no-any-return]


def test_every_route_is_described_with_every_status(client: FlaskClient) -> None:
    app = client.application
    assert undescribed(app) == []
    spec = _spec(client)
    validate(spec)  # a valid OpenAPI 3.1 document
    documented = {
        (method, path): set(op["responses"])
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    }
    # The URL map is the truth: every contract and ops route is in the document.
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(CONTRACT_PREFIXES) or rule.rule.startswith(OPS_ROUTES):
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                assert (method.lower(), openapi_path(rule)) in documented, rule.rule
    for key, statuses in EXPECTED_STATUSES.items():
        assert documented[key] == statuses, key
    assert set(documented) == set(EXPECTED_STATUSES)
    # Routes other branches add: at least what every route of their kind can answer.
    for (method, path), statuses in documented.items():
        op = spec["paths"][path][method]
        assert "414" in statuses
        if op.get("security") != []:
            assert "401" in statuses, (method, path)
        if "{" in path and path.startswith("/v1/"):
            assert {"404", "422"} <= statuses, (method, path)
    # Every error answer has the one error shape; every $ref resolves.
    schemas = spec["components"]["schemas"]
    for ops in spec["paths"].values():
        for op in ops.values():
            for status, answer in op["responses"].items():
                if status == "204":
                    assert "content" not in answer, op["summary"]
                for media in answer.get("content", {}).values():
                    ref = media["schema"].get("$ref", "")
                    if ref:
                        assert ref.rsplit("/", 1)[-1] in schemas
                    if status.startswith("4") and status != "414":
                        assert ref.endswith("/ErrorBody"), (status, op["summary"])
                if status == "503" and ref.endswith("/ErrorBody"):
                    assert answer["headers"]["Retry-After"]["required"] is True
    assert schemas["AssetOut"]["properties"]["uri"]
    assert set(schemas["JobList"]["required"]) == {"jobs", "next_cursor"}


def test_a_new_route_must_be_declared_and_ui_is_excluded(container: Container) -> None:
    app = create_app(container=container)
    # Names and routes the app does not have yet (the real dashboard and /v1/endpoints exist).
    ui = Blueprint("ui_extra", __name__, url_prefix="/ui")
    ui.add_url_rule("/extra/<job_id>", "job", lambda job_id: job_id)
    extra = Blueprint("extra", __name__, url_prefix="/v1")
    extra.add_url_rule("/extras", "extras", lambda: "[]")
    app.register_blueprint(ui)
    app.register_blueprint(extra)
    assert EXCLUDED_PREFIXES == ("/ui/",)
    # The undeclared /v1 route is caught; the dashboard is left out by design.
    assert undescribed(app) == ["/v1/extras"]
    with app.app_context():
        paths = document(app)["paths"]
    assert not any(p.startswith("/ui/") for p in paths)
    assert "/v1/extras" not in paths
    assert "/v1/endpoints" in paths


def _archived_job(session: Session, key: str, data: bytes, *, params: dict[str, Any]) -> Job:
    now = utcnow()
    job = Job(
        id=new_job_id(),
        track_id=new_track_id(),
        endpoint="modelslab/text2img",
        status=JobStatus.ARCHIVED,
        params=params,
        meta={"order": "o-1"},
        created_at=now,
        updated_at=now,
        manifest_key=None,
    )
    session.add(job)
    session.flush()
    session.add(
        Asset(
            job_id=job.id,
            role="output",
            index=0,
            key=key,
            source_url="data:image/png;base64," + "A" * 1000,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            content_type="image/png",
            width=1,
            height=1,
        )
    )
    return job


def test_assets_carry_a_uri_that_locates_the_object(
    client: FlaskClient, container: Container
) -> None:
    data = b"\x89PNG not really"
    key = "2026/01/02/job-uri/0.png"
    container.store.put_bytes(key, data, content_type="image/png", metadata={})
    with container.db.transaction() as session:
        job_id = _archived_job(session, key, data, params={"prompt": "p"}).id
    shown = client.get(f"/v1/jobs/{job_id}", headers=AUTH).get_json()
    JobOut.model_validate(shown)
    (asset,) = shown["assets"]
    assert asset["key"] == key  # relative to the archive root, as before
    parts = urlsplit(asset["uri"])
    assert parts.scheme == "file" and parts.netloc == ""
    assert Path(url2pathname(parts.path)).read_bytes() == data
    listed = client.get("/v1/jobs", headers=AUTH).get_json()
    JobList.model_validate(listed)
    assert listed["jobs"][0]["assets"][0]["uri"] == asset["uri"]


def test_listing_jobs_does_not_load_their_params(client: FlaskClient, container: Container) -> None:
    # 200 jobs whose params hold ~200 KB each (a data: URI): 40 MB that the JSON never shows.
    big = {"init_image": "data:image/png;base64," + "A" * 200_000}
    with container.db.transaction() as session:
        for i in range(200):
            _archived_job(session, f"2026/01/02/j{i}/0.png", b"x", params=big)
    gc.collect()
    tracemalloc.start()
    try:
        answer = client.get("/v1/jobs?limit=200", headers=AUTH)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"\nlisting 200 jobs with 40 MB of params: peak {peak / 2**20:.2f} MiB allocated")
    assert answer.status_code == 200
    body = answer.get_json()
    assert len(body["jobs"]) == 200 and "params" not in body["jobs"][0]
    # Loading the params alone would allocate more than 40 MB.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while listing"


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/nope", "/healthz", "/readyz"])
def test_answers_match_their_models(client: FlaskClient, path: str) -> None:
    answer = client.get(path, headers=AUTH)
    assert answer.content_type == "application/json"
    spec_path = "/v1/jobs/{job_id}" if path == "/v1/jobs/nope" else path
    op = _spec(client)["paths"][spec_path]["get"]
    assert str(answer.status_code) in op["responses"]
