"""The archive use-case against moto's S3: verification, NSFW policy, conflicts, audit."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.archive.audit import run_audit
from service.config import NsfwPolicy
from service.db.migrate import upgrade
from service.jobs.records import get_job
from service.jobs.submission import create_job
from service.sandbox.server import start_in_thread
from service.wiring import Container, build
from tests.support import badfiles
from tests.support.app import AUTH, SECRET, apply_callbacks, make_settings
from tests.support.fileserver import FileServer


@pytest.fixture
def sandbox() -> Iterator[str]:
    server, _ = start_in_thread("127.0.0.1", 0)
    try:
        yield server.url
    finally:
        server.shutdown()


def _container(tmp_path: Path, bucket: str, sandbox: str, **overrides: Any) -> Container:
    values: dict[str, Any] = {
        "archive_url": f"s3://{bucket}/vault",
        "modelslab_base_url": f"{sandbox}/api",
        "download_allowed_networks": (ipaddress.ip_network("127.0.0.1/32"),),
        "download_allowed_hosts": ("127.0.0.1",),
        "retry_base_seconds": 0.01,
    }
    settings = make_settings(
        f"sqlite:///{tmp_path / 'genvault.db'}", tmp_path, **(values | overrides)
    )
    c = build(settings)
    upgrade(c.db.engine)
    return c


@pytest.fixture
def make(tmp_path: Path, s3_bucket: str, sandbox: str) -> Iterator[Any]:
    made: list[Container] = []

    def factory(**overrides: Any) -> Container:
        c = _container(tmp_path / str(len(made)), s3_bucket, sandbox, **overrides)
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()


def _job_waiting(c: Container, **params: Any) -> Any:
    """A job the sandbox accepted and will never call back about: the test delivers results."""
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint="modelslab/text2img",
        params={
            "model_id": "m",
            "prompt": "[sandbox:processing,eta=600,webhook-never] x",
            **params,
        },
        metadata={},
    )
    worker = c.worker()
    worker.run_once()  # the submit task
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    assert job.status == "processing"
    return job, worker


def _deliver(c: Container, job: Any, outputs: list[str], **extra: Any) -> None:
    body = {
        "status": "success",
        "id": job.provider_request_id,
        "output": outputs,
        "track_id": job.track_id,
        **extra,
    }
    c.receiver.receive("modelslab", job.track_id, json.dumps(body).encode())
    apply_callbacks(c)  # the worker's half of a webhook: the job moves on, its archive queued


def _settle(c: Container, worker: Any, job_id: str) -> Any:
    for _ in range(5):
        if not worker.run_once():
            break
    with c.db.transaction() as s:
        return get_job(s, job_id)


def _objects(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name="us-east-1")
    listing = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listing}


def test_outputs_are_archived_with_checksums_metadata_and_the_manifest_last(
    make: Any, fileserver: FileServer, s3_bucket: str
) -> None:
    c = make()
    job, worker = _job_waiting(c, width=64, height=48)
    urls = [
        fileserver.put("/a.png", badfiles.image_bytes("png", 64, 48)),
        fileserver.put("/b.jpg", badfiles.image_bytes("jpeg", 64, 40), "image/jpeg"),
    ]
    _deliver(c, job, urls)
    done = _settle(c, worker, job.id)
    assert done.status == "archived"
    s3 = boto3.client("s3", region_name="us-east-1")
    manifest = json.loads(
        s3.get_object(Bucket=s3_bucket, Key=f"vault/{done.manifest_key}")["Body"].read()
    )
    for entry in manifest["assets"]:
        head = s3.head_object(Bucket=s3_bucket, Key=f"vault/{entry['key']}", ChecksumMode="ENABLED")
        body = s3.get_object(Bucket=s3_bucket, Key=f"vault/{entry['key']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"] == head["Metadata"]["sha256"]
        assert head["Metadata"]["job-id"] == job.id and head["Metadata"]["track-id"] == job.track_id
        assert head["ChecksumSHA256"]
        assert head["ContentType"] == entry["content_type"]
    # The request fixed 64x48: the JPEG of 64x40 is recorded as a mismatch, the PNG is not.
    assert "dimension_mismatch" not in manifest["assets"][0]
    assert manifest["assets"][1]["dimension_mismatch"] == {
        "expected_width": 64,
        "expected_height": 48,
    }
    assert manifest["assets"][1]["key"].endswith("/1.jpg")
    assert manifest["timings"]["submitted_at"] is not None


@pytest.mark.parametrize(
    "bad",
    ["truncated", "html", "empty", "svg", "bomb", "mislabelled", "gif", "oversize"],
)
def test_a_bad_output_fails_the_job_and_nothing_of_it_is_archived(
    make: Any, fileserver: FileServer, s3_bucket: str, tmp_path: Path, bad: str
) -> None:
    c = make(download_max_bytes=200_000)
    job, worker = _job_waiting(c)
    good = fileserver.put("/good.png", badfiles.image_bytes("png"))
    path = tmp_path / "bad"
    ctype = "image/png"
    if bad == "truncated":
        badfiles.truncated(path, "png")
    elif bad == "html":
        badfiles.html_error_page(path)
        ctype = "text/html"
    elif bad == "empty":
        badfiles.empty(path)
    elif bad == "svg":
        badfiles.svg(path)
        ctype = "image/svg+xml"
    elif bad == "bomb":
        badfiles.png_header_bomb(path)
    elif bad == "mislabelled":
        badfiles.png(path)
        ctype = "image/jpeg"
    elif bad == "gif":
        badfiles.gif(path)
        ctype = "image/gif"
    else:
        badfiles.oversize(path, 300_000)
    _deliver(c, job, [good, fileserver.put("/bad", path.read_bytes(), ctype)])
    done = _settle(c, worker, job.id)
    assert done.status == "failed"
    assert done.error_code in {"invalid_image", "download_too_large"}
    assert done.error_message
    assert _objects(s3_bucket) == {}, "the good output must not be archived alone"


@pytest.mark.parametrize(
    ("hosts", "rule"), [(("127.0.0.1",), "host-not-allowed"), (("*",), "cloud-metadata")]
)
def test_a_refused_address_fails_the_job_naming_the_rule(
    make: Any, s3_bucket: str, hosts: tuple[str, ...], rule: str
) -> None:
    c = make(download_allowed_hosts=hosts)
    job, worker = _job_waiting(c)
    _deliver(c, job, ["http://169.254.169.254/latest/meta-data/iam"])
    done = _settle(c, worker, job.id)
    assert done.status == "failed" and done.error_code == "download_refused"
    assert rule in done.error_message
    client = create_app(container=c).test_client()
    assert "genvault_download_refusals_total" in client.get("/metrics").get_data(as_text=True)
    assert _objects(s3_bucket) == {}


@pytest.mark.parametrize("policy", list(NsfwPolicy))
def test_nsfw_policy(make: Any, fileserver: FileServer, s3_bucket: str, policy: NsfwPolicy) -> None:
    c = make(nsfw_policy=policy)
    job, worker = _job_waiting(c)
    _deliver(
        c, job, [fileserver.put("/n.png", badfiles.image_bytes("png"))], nsfw_content_detected=True
    )
    done = _settle(c, worker, job.id)
    assert done.status == "archived" and done.nsfw is True
    keys = sorted(_objects(s3_bucket))
    manifest_key = f"vault/{done.manifest_key}"
    content = manifest_key.rsplit("/", 1)[0]
    # The images: the object's content but its manifest (the rest is OCFL's structure).
    image_keys = [
        k
        for k in keys
        if k.startswith(content + "/") and k not in (manifest_key, manifest_key + ".sig")
    ]
    if policy is NsfwPolicy.ARCHIVE:
        assert image_keys == [f"{content}/0.png"]
    elif policy is NsfwPolicy.QUARANTINE:
        # Inside the job's OCFL object (an object holds all its files), in its own directory.
        assert image_keys == [f"{content}/quarantine/0.png"]
    else:
        assert image_keys == []
    manifest = json.loads(_objects(s3_bucket)[manifest_key])
    assert manifest["nsfw_content_detected"] is True and manifest["nsfw_policy"] == policy.value
    assert len(manifest["assets"]) == 1 and manifest["assets"][0]["sha256"]


def test_a_replayed_archive_writes_nothing_new(
    make: Any, fileserver: FileServer, s3_bucket: str
) -> None:
    c = make()
    job, worker = _job_waiting(c)
    _deliver(c, job, [fileserver.put("/r.png", badfiles.image_bytes("png"))])
    _settle(c, worker, job.id)
    before = _objects(s3_bucket)
    # Forced re-run of the use-case (as after a lost lease): the job is archived, nothing moves.
    c.archiver.archive(job.id)
    assert _objects(s3_bucket) == before


@pytest.mark.damages_archive
def test_audit_finds_altered_deleted_and_unlisted_objects(
    make: Any, fileserver: FileServer, s3_bucket: str, tmp_path: Path
) -> None:
    c = make()
    job, worker = _job_waiting(c)
    _deliver(
        c,
        job,
        [fileserver.put(f"/{i}.png", badfiles.image_bytes("png", 20 + i, 20)) for i in range(3)],
    )
    done = _settle(c, worker, job.id)
    client: FlaskClient = create_app(container=c).test_client()
    clean = client.get(f"/v1/jobs/{job.id}/audit", headers=AUTH).get_json()
    # Three outputs and their three thumbnails (derived objects are checked too).
    assert clean["ok"] is True and clean["checked"] == 6
    [report] = run_audit(c.db, c.store)
    assert report.ok

    prefix = f"vault/{done.manifest_key.rsplit('/', 1)[0]}"
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=s3_bucket, Key=f"{prefix}/0.png", Body=b"tampered")  # behind our back
    s3.delete_object(Bucket=s3_bucket, Key=f"{prefix}/1.png")
    s3.put_object(Bucket=s3_bucket, Key=f"{prefix}/extra.png", Body=b"who put this here")

    [report] = run_audit(c.db, c.store)
    assert not report.ok
    assert [a["key"] for a in report.altered] == [f"{done.manifest_key.rsplit('/', 1)[0]}/0.png"]
    assert report.missing == [f"{done.manifest_key.rsplit('/', 1)[0]}/1.png"]
    assert report.unlisted == [f"{done.manifest_key.rsplit('/', 1)[0]}/extra.png"]
    api = client.get(f"/v1/jobs/{job.id}/audit", headers=AUTH).get_json()
    assert api["ok"] is False and len(api["altered"]) == 1

    env = {
        "GENVAULT_DATABASE_URL": c.settings.database_url,
        "GENVAULT_ARCHIVE_URL": c.settings.archive_url,
        "GENVAULT_SECRET_KEY": SECRET,
        "PATH": str(Path(sys.executable).parent),
    }
    import os

    env |= {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    cli = subprocess.run(
        [sys.executable, "-m", "service", "audit"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 1, cli.stderr
    assert "1 jobs with problems" in cli.stderr and "1 missing, 1 altered, 1 unlisted" in cli.stderr
    assert "audited 1/1 jobs" in cli.stderr


def test_with_confirm_callbacks_a_webhook_url_the_provider_does_not_confirm_is_never_fetched(
    make: Any, fileserver: FileServer, s3_bucket: str
) -> None:
    c = make(confirm_callbacks=True)
    job, worker = _job_waiting(c)  # the sandbox says: still processing, for ten minutes
    forged = fileserver.put("/forged.png", badfiles.image_bytes("png"))
    _deliver(c, job, [forged])
    worker.run_once()
    with c.db.transaction() as s:
        assert get_job(s, job.id).status == "archiving"  # waiting for the provider to agree
    assert fileserver.hits.get("/forged.png") is None
    assert _objects(s3_bucket) == {}
