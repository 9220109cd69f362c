"""Erasure (DELETE /v1/jobs/{id}, `genvault jobs delete`) on the file archive and on moto's S3
server, with and without Object Lock, on both databases.

Each job is archived for real (the sandbox provider, outputs served from loopback). The
tombstone's signature is checked with the public key of GET /v1/signing-key and
``cryptography`` alone; ``job.deleted`` is delivered to a receiver on loopback that verifies
it with the official ``standardwebhooks`` package.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.serving import make_server

from service.app import create_app
from service.archive import layout
from service.cli import main
from service.db.migrate import upgrade
from service.db.models import Asset, AuditEntry, Callback, Event, Job, Project, Task
from service.db.types import utcnow
from service.jobs.records import get_job
from service.jobs.submission import create_job
from service.sandbox.server import start_in_thread
from service.storage.base import StorageError
from service.wiring import Container, build
from tests.integration.test_events import drain
from tests.support import badfiles
from tests.support.app import AUTH, SECRET, TOKEN, apply_callbacks, make_settings
from tests.support.fileserver import FileServer
from tests.support.receivers import Receiver, start_receiver
from tests.support.s3 import free_port

pytestmark = pytest.mark.timeout(120)

IMG2IMG = "modelslab/img2img"
PROMPT = "a red fox in the snow [sandbox:processing,eta=600,webhook-never]"
PROVIDER_KEYS = ("ml-test-key", "ml-enterprise-test-key", "aiml-test-key")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def sandbox() -> Iterator[str]:
    server, _ = start_in_thread("127.0.0.1", 0)
    try:
        yield server.url
    finally:
        server.shutdown()


@pytest.fixture
def make(tmp_path: Path, sandbox: str) -> Iterator[Any]:
    made: list[Container] = []

    def factory(database_url: str, archive_url: str, **overrides: Any) -> Container:
        values: dict[str, Any] = {
            "archive_url": archive_url,
            "modelslab_base_url": f"{sandbox}/api",
            "download_allowed_networks": (ipaddress.ip_network("127.0.0.1/32"),),
            "download_allowed_hosts": ("127.0.0.1",),
            "retry_base_seconds": 0.01,
            "events_allowed_networks": "127.0.0.1/32",
            "events_retry_schedule": "0.1,0.1",
            "events_timeout": 2,
            "worker_poll_interval": 0.1,
        }
        c = build(make_settings(database_url, tmp_path / str(len(made)), **(values | overrides)))
        upgrade(c.db.engine)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


def _s3() -> Any:
    return boto3.client("s3", region_name="us-east-1")


def _inline_png() -> str:
    return "data:image/png;base64," + base64.b64encode(badfiles.image_bytes("png", 24, 24)).decode()


def _archived(c: Container, fileserver: FileServer, project: str = "default") -> Job:
    """A job archived for real: an inline input, a fetched input, two outputs, thumbnails."""
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint=IMG2IMG,
        params={
            "model_id": "flux-kontext-dev",
            "prompt": PROMPT,
            "init_image": _inline_png(),
            "init_image_2": fileserver.put("/in.png", badfiles.image_bytes("png", 24, 24)),
        },
        metadata={"customer": "alice@example.com"},
        project=project,
        accept_inline=c.inline_inputs.accept,
    )
    worker = c.worker()
    worker.run_once()  # submit: the sandbox says processing and never calls back
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    outputs = [
        fileserver.put(f"/{job.id}-{i}.png", badfiles.image_bytes("png", 20 + i, 20))
        for i in range(2)
    ]
    body = {
        "status": "success",
        "id": job.provider_request_id,
        "output": outputs,
        "track_id": job.track_id,
        "meta": {"prompt": PROMPT},
    }
    c.receiver.receive("modelslab", job.track_id, json.dumps(body).encode())
    apply_callbacks(c)
    for _ in range(5):
        if not worker.run_once():
            break
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    assert job.status == "archived", job.error_message
    return job


def _job_keys(c: Container, job: Job) -> list[str]:
    with c.db.transaction() as s:
        keys = s.execute(select(Asset.key).where(Asset.job_id == job.id)).scalars().all()
    return sorted(
        k for p in layout.for_job(job, keys).prefixes() for k in c.store.versioned_keys(p + "/")
    )


def _digests(c: Container, keys: list[str]) -> dict[str, tuple[str, int]]:
    out = {}
    for key in keys:
        with c.store.open(key) as stream:
            data = stream.read()
        out[key] = (hashlib.sha256(data).hexdigest(), len(data))
    return out


def _register(api: FlaskClient, receiver: Receiver) -> None:
    r = api.post("/v1/endpoints", json={"url": receiver.url}, headers=AUTH)
    assert r.status_code == 201, r.get_json()
    receiver.secret = r.get_json()["secret"]


def _verify_with_public_key(api: FlaskClient, data: bytes, signature_doc: bytes) -> None:
    """The tombstone's signature, checked with nothing of genvault's but its public key."""
    public = api.get("/v1/signing-key", headers=AUTH).get_json()
    doc = json.loads(signature_doc)
    assert doc["algorithm"] == "Ed25519" and doc["key_id"] == public["key_id"]
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public["public_key"]))
    key.verify(base64.b64decode(doc["signature"]), data)  # raises InvalidSignature


def _read(c: Container, key: str) -> bytes:
    with c.store.open(key) as stream:
        return stream.read()


class _Live:
    """The app on a loopback port, for the CLI (an HTTP client)."""

    def __init__(self, c: Container) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = make_server("127.0.0.1", port, create_app(container=c), threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.mark.parametrize("archive", ["s3", "file"])
def test_erasure_removes_every_object_and_leaves_a_signed_tombstone(
    make: Any,
    database_url: str,
    fileserver: FileServer,
    archive: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if archive == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        archive_url = f"s3://{bucket}/vault"
    else:
        archive_url = f"file://{tmp_path / 'files'}"
    c = make(database_url, archive_url)
    api = create_app(container=c).test_client()
    rx = start_receiver()
    _register(api, rx)
    job = _archived(c, fileserver)
    drain(c)
    before = _job_keys(c, job)
    # Outputs, inputs (inline and fetched), thumbnails, the manifest and its signature.
    names = {k.rsplit("/", 1)[-1] for k in before}
    assert {"0.png", "1.png", "0.webp", "1.webp", "manifest.json", "manifest.json.sig"} <= names
    assert sum("/inputs/" in k for k in before) == 2
    digests = _digests(c, before)

    reason = "GDPR request #4711"
    if archive == "file":
        # From a shell: `genvault jobs delete ID --reason R`, through the HTTP API.
        live = _Live(c)
        monkeypatch.setenv("GENVAULT_URL", live.url)
        monkeypatch.setenv("GENVAULT_TOKEN", TOKEN)
        try:
            assert main(["jobs", "delete", job.id, "--reason", reason, "--json"]) == 0
        finally:
            live.stop()
        shown = json.loads(capsys.readouterr().out)
    else:
        r = api.delete(f"/v1/jobs/{job.id}", json={"reason": reason}, headers=AUTH)
        assert r.status_code == 200, r.get_json()
        shown = r.get_json()
    assert shown["status"] == "deleted" and shown["assets"] == []
    assert shown["deleted_at"] and shown["manifest_key"] is None and shown["metadata"] == {}

    # Every object of the job is gone (on S3: every version, no delete marker left).
    assert _job_keys(c, job) == []
    if archive == "s3":
        listing = _s3().list_object_versions(Bucket=bucket, Prefix="vault/")
        left = [v["Key"] for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])]
        assert not [k for k in left if job.id in k and "/tombstones/" not in f"/{k}"], left
    else:
        root = tmp_path / "files"
        left = [p for p in root.rglob("*") if job.id in str(p) and "tombstones" not in p.parts]
        assert left == []

    # The tombstone: outside the OCFL roots, signed, listing what was removed with digests.
    key = f"tombstones/default/{job.id}.json"
    data = _read(c, key)
    _verify_with_public_key(api, data, _read(c, key + ".sig"))
    stone = json.loads(data)
    assert stone["job_id"] == job.id and stone["project"] == "default"
    assert (stone["track_id"], stone["endpoint"]) == (job.track_id, IMG2IMG)
    assert "fox" not in data.decode() and "alice@" not in data.decode()  # identity, no content
    assert stone["reason"] == reason
    assert stone["deleted_by"].startswith("token:")
    assert datetime.fromisoformat(stone["deleted_at"]) <= utcnow()
    removed = {r["key"]: (r["sha256"], r["size"]) for r in stone["removed"]}
    assert removed == digests
    assert not any(s in data.decode() for s in (SECRET, TOKEN, *PROVIDER_KEYS))

    # GET still answers; the row kept, what identified the content gone.
    got = api.get(f"/v1/jobs/{job.id}", headers=AUTH).get_json()
    assert got["status"] == "deleted" and got["assets"] == [] and got["id"] == job.id
    with c.db.transaction() as s:
        row = get_job(s, job.id)
        assert row.params == {} and row.meta == {} and row.deleted_at is not None
        for table in (Asset, Callback):
            count = select(func.count()).select_from(table).where(table.job_id == job.id)
            assert s.execute(count).scalar_one() == 0
        events = s.execute(select(Event).where(Event.job_id == job.id)).scalars().all()
        assert all(not e.data.get("metadata") for e in events)
    assert "alice@example.com" not in json.dumps(got)

    # job.deleted delivered and verified; the audit row present, with no secret in it.
    drain(c)
    [deleted] = [v for v in rx.verified() if v["type"] == "job.deleted"]
    assert deleted["data"]["id"] == job.id and deleted["data"]["status"] == "deleted"
    assert deleted["data"]["tombstone_key"] == key and deleted["data"]["assets"] == []
    entries = api.get("/v1/audit-log?action=job.delete", headers=AUTH).get_json()["entries"]
    [entry] = entries
    assert entry["target"] == job.id and entry["project"] == "default"
    assert entry["changes"]["reason"] == reason and entry["changes"]["objects_removed"] == len(
        before
    )
    assert not any(s in json.dumps(entry) for s in (SECRET, TOKEN, *PROVIDER_KEYS))

    # Again: the same answer, no second event, no second audit row.
    r = api.delete(f"/v1/jobs/{job.id}", json={"reason": "again"}, headers=AUTH)
    assert r.status_code == 200 and r.get_json()["status"] == "deleted"
    with c.db.transaction() as s:
        kinds = s.execute(select(Event.type).where(Event.job_id == job.id)).scalars().all()
        audits = s.execute(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "job.delete")
        ).scalar_one()
    assert kinds.count("job.deleted") == 1 and audits == 1
    assert json.loads(_read(c, key))["reason"] == reason  # write-once


def test_who_may_erase_what_and_when(make: Any, fileserver: FileServer, tmp_path: Path) -> None:
    c = make(f"sqlite:///{tmp_path / 'g.db'}", f"file://{tmp_path / 'files'}")
    api = create_app(container=c).test_client()
    with c.db.transaction() as s:
        s.add(Project(slug="beta", name="Beta", created_by="test", created_at=utcnow()))

    def key(project: str, *scopes: str) -> dict[str, str]:
        body = {"name": "t", "project": project, "scopes": list(scopes)}
        r = api.post("/v1/keys", json=body, headers=AUTH)
        assert r.status_code == 201, r.get_json()
        return {"Authorization": f"Bearer {r.get_json()['key']}"}

    job = _archived(c, fileserver)
    before = _job_keys(c, job)
    reason = {"reason": "asked to"}
    r = api.delete(f"/v1/jobs/{job.id}", json=reason, headers=key("default", "jobs:read"))
    assert r.status_code == 403 and "jobs:delete" in r.get_json()["error"]["message"]
    r = api.delete(f"/v1/jobs/{job.id}", json=reason, headers=key("beta", "jobs:delete"))
    assert r.status_code == 404
    missing = api.delete("/v1/jobs/00000000nosuchjob", json=reason, headers=AUTH)
    assert missing.status_code == 404
    for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 1001}, {"reason": "a\0"}):
        r = api.delete(f"/v1/jobs/{job.id}", json=body, headers=AUTH)
        assert r.status_code == 422, (body, r.get_json())
        assert r.get_json()["error"]["errors"][0]["field"] == "reason"
    assert _job_keys(c, job) == before

    # A job in flight: 409, and nothing of it is touched (its inline input stays).
    waiting, _ = create_job(
        c.db,
        c.queue,
        endpoint=IMG2IMG,
        params={"model_id": "flux-kontext-dev", "prompt": PROMPT, "init_image": _inline_png()},
        metadata={},
        accept_inline=c.inline_inputs.accept,
    )
    kept = _job_keys(c, waiting)
    assert kept
    r = api.delete(f"/v1/jobs/{waiting.id}", json=reason, headers=AUTH)
    assert r.status_code == 409 and "queued" in r.get_json()["error"]["message"]
    assert _job_keys(c, waiting) == kept

    # jobs:delete alone erases (and is shown the job it erased).
    r = api.delete(f"/v1/jobs/{job.id}", json=reason, headers=key("default", "jobs:delete"))
    assert r.status_code == 200 and r.get_json()["status"] == "deleted"
    assert _job_keys(c, job) == []
    # The CLI refuses a delete without a reason before any request.
    assert main(["jobs", "delete", job.id]) == 2


@pytest.mark.parametrize("mode", ["COMPLIANCE", "GOVERNANCE"])
def test_under_object_lock_nothing_is_removed_and_the_date_is_given(
    make: Any, fileserver: FileServer, s3_env: str, tmp_path: Path, mode: str
) -> None:
    # GOVERNANCE could be bypassed with s3:BypassGovernanceRetention; genvault never asks to.
    bucket = f"genvault-lock-{uuid.uuid4().hex[:12]}"
    _s3().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    c = make(
        f"sqlite:///{tmp_path / 'g.db'}",
        f"s3://{bucket}/vault",
        s3_object_lock_mode=mode,
        s3_object_lock_days=1,
    )
    api = create_app(container=c).test_client()
    job = _archived(c, fileserver)

    def versions() -> list[tuple[str, str]]:
        listing = _s3().list_object_versions(Bucket=bucket, Prefix="vault/")
        found = listing.get("Versions", []) + listing.get("DeleteMarkers", [])
        return sorted((v["Key"], v["VersionId"]) for v in found)

    before = versions()
    assert len(before) >= 8
    r = api.delete(f"/v1/jobs/{job.id}", json={"reason": "erase me"}, headers=AUTH)
    assert r.status_code == 409, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "retained" and f"({mode})" in error["message"]
    until = datetime.fromisoformat(error["retain_until"])
    assert utcnow() + timedelta(hours=23) < until < utcnow() + timedelta(days=1, minutes=5)
    assert error["retain_until"] in error["message"]
    # Nothing half-deleted: every version still there, no tombstone, the job as it was.
    assert versions() == before
    assert not any("tombstones/" in k for k, _ in before)
    shown = api.get(f"/v1/jobs/{job.id}", headers=AUTH).get_json()
    assert shown["status"] == "archived" and len(shown["assets"]) == 2
    with c.db.transaction() as s:
        assert s.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == 0
    # The second net: S3 itself refuses to delete a retained version.
    with pytest.raises(StorageError):
        c.store.delete(str(job.manifest_key))
    assert versions() == before


def test_on_a_versioned_bucket_every_version_goes(
    make: Any, fileserver: FileServer, s3_env: str, tmp_path: Path
) -> None:
    bucket = f"genvault-versions-{uuid.uuid4().hex[:12]}"
    s3 = _s3()
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    c = make(f"sqlite:///{tmp_path / 'g.db'}", f"s3://{bucket}/vault")
    api = create_app(container=c).test_client()
    job = _archived(c, fileserver)
    # Someone deleted an output by hand: only a delete marker hides it; its bytes remain.
    output = next(k for k in _job_keys(c, job) if k.endswith("/0.png"))
    s3.delete_object(Bucket=bucket, Key=f"vault/{output}")
    assert output not in list(c.store.iter_keys(output))

    r = api.delete(f"/v1/jobs/{job.id}", json={"reason": "erase me"}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    listing = s3.list_object_versions(Bucket=bucket, Prefix="vault/")
    found = listing.get("Versions", []) + listing.get("DeleteMarkers", [])
    # The storage root's own files stay: they are the project's, not the job's.
    left = {v["Key"] for v in found if job.id in v["Key"]}
    assert left == {
        f"vault/tombstones/default/{job.id}.json",
        f"vault/tombstones/default/{job.id}.json.sig",
    }
    stone = json.loads(_read(c, f"tombstones/default/{job.id}.json"))
    hidden = next(r for r in stone["removed"] if r["key"] == output)
    assert hidden == {"key": output, "sha256": None, "size": None}
    assert datetime.fromisoformat(stone["deleted_at"]).tzinfo is not None
    assert datetime.now(UTC) - datetime.fromisoformat(stone["deleted_at"]) < timedelta(minutes=5)


def test_the_dashboard_erases_and_shows_a_deleted_job_as_deleted(
    make: Any, fileserver: FileServer, tmp_path: Path
) -> None:
    c = make(f"sqlite:///{tmp_path / 'g.db'}", f"file://{tmp_path / 'files'}")
    app = create_app(container=c)
    job = _archived(c, fileserver)
    viewer_key = (
        app.test_client()
        .post("/v1/keys", json={"name": "v", "project": "default", "role": "viewer"}, headers=AUTH)
        .get_json()["key"]
    )

    def signed_in(token: str) -> FlaskClient:
        client = app.test_client()
        page = client.get("/ui/login").get_data(as_text=True)
        csrf = CSRF.search(page)
        assert csrf
        r = client.post("/ui/login", data={"token": token, "csrf_token": csrf.group(1)})
        assert r.status_code == 302, r.get_data(as_text=True)
        return client

    viewer = signed_in(viewer_key)
    page = viewer.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    assert "<img" in page and 'id="erase"' not in page  # a viewer holds no jobs:delete
    token = CSRF.search(page)
    assert token
    refused = viewer.post(
        f"/ui/jobs/{job.id}/erase", data={"csrf_token": token.group(1), "reason": "no"}
    )
    assert refused.status_code == 403 and "jobs:delete" in refused.get_data(as_text=True)
    admin = signed_in(TOKEN)
    page = admin.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    assert 'id="erase"' in page
    csrf = CSRF.search(page)
    assert csrf
    before = _job_keys(c, job)
    form = {"csrf_token": csrf.group(1), "reason": "asked by the customer"}
    r = admin.post(f"/ui/jobs/{job.id}/erase", data=form)
    assert r.status_code == 302
    page = admin.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    assert 'id="deleted"' in page and f"tombstones/default/{job.id}.json" in page
    assert '<span class="badge deleted"' in page
    assert "<img" not in page and 'id="erase"' not in page and PROMPT not in page
    assert _job_keys(c, job) == []
    with c.db.transaction() as s:
        [entry] = s.execute(select(AuditEntry).where(AuditEntry.action == "job.delete")).scalars()
    assert entry.target == job.id and entry.changes == {
        "reason": "asked by the customer",
        "objects_removed": len(before),
        "tombstone": f"tombstones/default/{job.id}.json",
    }


@pytest.mark.parametrize("archive", ["s3", "file"])
def test_a_job_of_an_earlier_release_is_erased_from_its_dated_directories(
    make: Any, archive: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The root layout of releases before projects: its directory and its quarantine."""
    if archive == "s3":
        archive_url = f"s3://{request.getfixturevalue('s3_bucket')}/vault"
    else:
        archive_url = f"file://{tmp_path / 'files'}"
    c = make(f"sqlite:///{tmp_path / 'g.db'}", archive_url)
    api = create_app(container=c).test_client()
    created = datetime(2025, 3, 4, 5, 6, tzinfo=UTC)
    old, neighbour = (Job(id=f"0195{n:028x}", created_at=created) for n in (1, 2))
    png = badfiles.image_bytes("png", 8, 8)
    keys: dict[str, list[str]] = {}
    for job in (old, neighbour):
        where = layout.JobLayout(job.id, created.date(), None)
        keys[job.id] = [
            where.output_key(0, "png"),
            where.output_key(1, "png", quarantine=True),
            where.input_key(0, "png"),
            where.thumb_key(0),
            where.manifest_key(),
            where.manifest_key() + ".sig",
        ]
        for key in keys[job.id]:
            c.store.put_bytes(key, png, content_type="image/png", metadata={})
        with c.db.transaction() as s:
            s.add(
                Job(
                    id=job.id,
                    track_id=uuid.uuid4().hex,
                    endpoint="modelslab/text2img",
                    status="archived",
                    params={"prompt": "old"},
                    meta={},
                    manifest_key=where.manifest_key(),
                    created_at=created,
                    updated_at=created,
                )
            )
            s.flush()  # the job before its asset (a foreign key)
            s.add(
                Asset(
                    job_id=job.id,
                    role="output",
                    index=0,
                    key=keys[job.id][0],
                    source_url="https://example.com/0.png",
                    sha256=hashlib.sha256(png).hexdigest(),
                    size=len(png),
                    content_type="image/png",
                    width=8,
                    height=8,
                )
            )
    r = api.delete(f"/v1/jobs/{old.id}", json={"reason": "old one"}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    everything = set(c.store.versioned_keys(""))
    assert not everything & set(keys[old.id])
    assert set(keys[neighbour.id]) <= everything  # the same day's other job is untouched
    stone = json.loads(_read(c, f"tombstones/default/{old.id}.json"))
    assert sorted(r["key"] for r in stone["removed"]) == sorted(keys[old.id])
    if archive == "file":
        day = tmp_path / "files" / "2025" / "03" / "04"
        assert not (day / old.id).exists() and (day / neighbour.id).is_dir()
        assert not (tmp_path / "files" / "quarantine" / "2025" / "03" / "04" / old.id).exists()


def test_an_erasure_interrupted_after_its_tombstone_is_finished_by_the_same_request(
    make: Any, fileserver: FileServer, tmp_path: Path
) -> None:
    c = make(f"sqlite:///{tmp_path / 'g.db'}", f"file://{tmp_path / 'files'}")
    api = create_app(container=c).test_client()
    job = _archived(c, fileserver)
    before = _job_keys(c, job)
    # What a first run left when it stopped: its tombstone (no signature yet), the manifest
    # removed, the rest still there and the job still archived.
    key = f"tombstones/default/{job.id}.json"
    first = json.dumps({"job_id": job.id, "reason": "first run", "removed": before}).encode()
    c.store.put_bytes(key, first, content_type="application/json", metadata={})
    c.store.delete(str(job.manifest_key))

    r = api.delete(f"/v1/jobs/{job.id}", json={"reason": "second run"}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    assert _job_keys(c, job) == []
    assert _read(c, key) == first  # write-once: the first run's record stands
    _verify_with_public_key(api, first, _read(c, key + ".sig"))


def test_a_callback_after_the_erasure_changes_nothing(
    make: Any, fileserver: FileServer, tmp_path: Path
) -> None:
    c = make(f"sqlite:///{tmp_path / 'g.db'}", f"file://{tmp_path / 'files'}")
    api = create_app(container=c).test_client()
    job = _archived(c, fileserver)

    def live_tasks() -> int:
        with c.db.transaction() as s:
            live = select(func.count()).select_from(Task)
            live = live.where(Task.job_id == job.id, Task.status.in_(["queued", "running"]))
            return int(s.execute(live).scalar_one())

    assert live_tasks() == 1  # the poll scheduled when the provider said "processing"
    r = api.delete(f"/v1/jobs/{job.id}", json={"reason": "asked to"}, headers=AUTH)
    assert r.status_code == 200
    # The provider calls back once more (its webhook token cannot be taken back).
    late = {"status": "success", "id": job.provider_request_id, "output": ["https://x/1.png"]}
    c.receiver.receive("modelslab", job.track_id, json.dumps(late).encode())
    apply_callbacks(c)
    c.worker().run_once()
    shown = api.get(f"/v1/jobs/{job.id}", headers=AUTH).get_json()
    assert shown["status"] == "deleted" and shown["assets"] == []
    assert _job_keys(c, job) == []
    # Its scheduled poll was ended by the erasure: nobody asks the provider about it again.
    assert live_tasks() == 0


def test_under_a_legal_hold_nothing_is_removed_until_it_is_lifted(
    make: Any, fileserver: FileServer, s3_env: str, tmp_path: Path
) -> None:
    # No retention period: a legal hold alone, which has no date.
    bucket = f"genvault-hold-{uuid.uuid4().hex[:12]}"
    s3 = _s3()
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    c = make(f"sqlite:///{tmp_path / 'g.db'}", f"s3://{bucket}/vault")
    api = create_app(container=c).test_client()
    job = _archived(c, fileserver)
    output = next(k for k in _job_keys(c, job) if k.endswith("/0.png"))
    s3.put_object_legal_hold(Bucket=bucket, Key=f"vault/{output}", LegalHold={"Status": "ON"})
    before = _job_keys(c, job)

    r = api.delete(f"/v1/jobs/{job.id}", json={"reason": "erase me"}, headers=AUTH)
    assert r.status_code == 409, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "retained" and "legal hold" in error["message"]
    assert error.get("retain_until") is None  # a hold has no date to give
    assert "Nothing was removed" in error["message"]
    assert _job_keys(c, job) == before
    assert api.get(f"/v1/jobs/{job.id}", headers=AUTH).get_json()["status"] == "archived"

    s3.put_object_legal_hold(Bucket=bucket, Key=f"vault/{output}", LegalHold={"Status": "OFF"})
    r = api.delete(f"/v1/jobs/{job.id}", json={"reason": "erase me"}, headers=AUTH)
    assert r.status_code == 200, r.get_json()
    assert _job_keys(c, job) == []
