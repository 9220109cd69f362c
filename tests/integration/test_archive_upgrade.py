"""`genvault archive upgrade`: jobs of the dated layouts become OCFL objects, verified first.

Real CLI processes over moto's S3 server and the file archive: jobs archived as the two
earlier releases wrote them (root layout, then dated directories under the project) become
objects that ocfl-py validates and the audit passes, with the same digests in the API; a job
whose old record does not verify is refused and left as it was; a second run changes nothing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.archive import layout, pipeline
from service.archive.audit import run_audit
from service.config import NsfwPolicy
from service.wiring import Container
from tests.integration.test_archive import _deliver, _settle, make, sandbox  # noqa: F401
from tests.integration.test_archive_projects import _asset_keys, _waiting, archive_url  # noqa: F401
from tests.support import badfiles
from tests.support.app import AUTH, run_cli
from tests.support.fileserver import FileServer
from tests.support.validators import validate_ocfl_object


def _archive_as(
    c: Container,
    fileserver: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    where: Any,
    **delivered: Any,
) -> Any:
    """A job archived the way an earlier release wrote it (``where``: job → its layout)."""
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "job_layout", lambda _store, job, **_: where(job))
        job, worker = _waiting(
            c,
            init_image=fileserver.put(f"/{id(where)}-in.png", badfiles.image_bytes("png", 24, 24)),
        )
        _deliver(
            c,
            job,
            [fileserver.put(f"/{job.id}.png", badfiles.image_bytes("png", 20, 20))],
            **delivered,
        )
        done = _settle(c, worker, job.id)
    assert done.status == "archived" and not layout.parse(done.manifest_key).ocfl  # type: ignore[union-attr]
    return done


def _cli(c: Container, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(c, *args)


def _shown(c: Container, job_id: str) -> dict[str, Any]:
    answer = create_app(container=c).test_client().get(f"/v1/jobs/{job_id}", headers=AUTH)
    body: dict[str, Any] = answer.get_json()
    return body


def test_upgrade_turns_dated_jobs_into_verified_objects(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    archive_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = make(archive_url=archive_url, nsfw_policy=NsfwPolicy.QUARANTINE)
    root = _archive_as(c, fileserver, monkeypatch, lambda j: layout.JobLayout.of(j, root=True))
    dated = _archive_as(c, fileserver, monkeypatch, layout.JobLayout.dated)
    nsfw = _archive_as(
        c, fileserver, monkeypatch, layout.JobLayout.dated, nsfw_content_detected=True
    )
    tampered = _archive_as(c, fileserver, monkeypatch, layout.JobLayout.dated)
    old_jobs = (root, dated, nsfw)
    before = {j.id: _shown(c, j.id) for j in (*old_jobs, tampered)}
    old_keys = {j.id: _asset_keys(c, j.id) for j in (*old_jobs, tampered)}
    # Rot in one old job's image: its record no longer verifies.
    image = layout.JobLayout.dated(tampered).output_key(0, "png")
    assert image in old_keys[tampered.id]
    with c.store.open(image) as stream:
        rotten = bytearray(stream.read())
    rotten[-20] ^= 0xFF
    if archive_url.startswith("file://"):
        Path(archive_url.removeprefix("file://"), image).write_bytes(bytes(rotten))
    else:
        import boto3

        bucket, _, prefix = archive_url.removeprefix("s3://").partition("/")
        boto3.client("s3", region_name="us-east-1").put_object(
            Bucket=bucket, Key=f"{prefix}/{image}", Body=bytes(rotten)
        )

    done = _cli(c, "archive", "upgrade")
    assert done.returncode == 1, done.stderr  # one refused
    assert f"{tampered.id}: refused: {image} differs from its manifest entry" in done.stderr
    assert "upgraded 3 jobs to OCFL objects, 0 already objects, refused 1" in done.stdout
    for job in old_jobs:
        old = (
            layout.JobLayout.dated(job) if job is not root else layout.JobLayout.of(job, root=True)
        )
        # Listed for the operator to delete: the directories that held it (quarantine too).
        assert f"  {old.prefix()}/" in done.stdout
        assert (f"  {old.prefix(quarantine=True)}/" in done.stdout) is (job is nsfw)

        after = _shown(c, job.id)
        where = layout.parse(after["manifest_key"])
        assert where is not None and where.ocfl and where.project == "default"
        assert after["object_uri"] == c.store.uri(where.object_root or "")
        # The same images, digest for digest, now read from the object.
        assert [(a["index"], a["sha256"], a["size"]) for a in after["assets"]] == [
            (a["index"], a["sha256"], a["size"]) for a in before[job.id]["assets"]
        ]
        assert all(a["key"].startswith(where.prefix()) for a in after["assets"])
        for key in _asset_keys(c, job.id):
            with c.store.open(key) as stream:
                assert stream.read()
        assert validate_ocfl_object(after["object_uri"]).returncode == 0
        manifest = _manifest(c, after["manifest_key"])
        assert manifest["upgraded_from"]["manifest_key"] == before[job.id]["manifest_key"]
        assert manifest["object_id"] == f"urn:genvault:job:{job.id}"
        # Nothing old is deleted by the upgrade.
        for key in old_keys[job.id]:
            with c.store.open(key):
                pass
    # The refused job is as it was.
    assert _shown(c, tampered.id)["manifest_key"] == before[tampered.id]["manifest_key"]
    assert _asset_keys(c, tampered.id) == old_keys[tampered.id]

    reports = {r.job_id: r for r in run_audit(c.db, c.store, verifier=c.archiver.signer.verifier)}
    assert all(reports[j.id].ok for j in old_jobs), {j.id: reports[j.id] for j in old_jobs}
    assert not reports[tampered.id].ok

    again = _cli(c, "archive", "upgrade")
    assert "upgraded 0 jobs to OCFL objects, 3 already objects, refused 1" in again.stdout


def _manifest(c: Container, key: str) -> Any:
    import json

    with c.store.open(key) as stream:
        return json.loads(stream.read())
