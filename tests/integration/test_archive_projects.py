"""Each project's archive under ``projects/{slug}/``; jobs of earlier releases where they are.

On both stores (moto's S3 server and the file store): a project's job writes only under its
prefix, its quarantine included; a job archived in the root layout of earlier releases stays
readable and auditable (database and bucket-only), and a re-archive after an operator's retry
keeps its keys; a job created before the upgrade with objects its worker never recorded
completes where it began.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.archive import layout, pipeline
from service.archive.audit import run_audit, run_bucket_audit
from service.config import NsfwPolicy
from service.db.models import DEFAULT_PROJECT, Asset, Job, Project
from service.db.types import utcnow
from service.errors import PermanentError
from service.jobs.operator_retry import RetryAction, retry_job
from service.jobs.records import get_job
from service.jobs.submission import create_job
from service.wiring import Container
from tests.integration.test_archive import _deliver, _settle, make, sandbox  # noqa: F401
from tests.support import badfiles
from tests.support.app import AUTH
from tests.support.fileserver import FileServer

IMG2IMG = "modelslab/img2img"
TEXT2IMG = "modelslab/text2img"


@pytest.fixture(params=["s3", "file"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path, s3_bucket: str) -> str:
    if request.param == "s3":
        return f"s3://{s3_bucket}/vault"
    return f"file://{tmp_path / 'files'}"


def _project(c: Container, slug: str) -> None:
    with c.db.transaction() as s:
        s.add(Project(slug=slug, name=slug.title(), created_by="test", created_at=utcnow()))


def _waiting(c: Container, project: str = DEFAULT_PROJECT, **params: Any) -> tuple[Job, Any]:
    """A job the sandbox accepted and never calls back about, submitted (img2img with inputs)."""
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint=IMG2IMG if params else TEXT2IMG,
        params={
            "model_id": "flux-kontext-dev",
            "prompt": "[sandbox:processing,eta=600,webhook-never] x",
            **params,
        },
        metadata={},
        project=project,
        accept_inline=c.inline_inputs.accept,
    )
    worker = c.worker()
    worker.run_once()  # submit
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    assert job.status == "processing"
    return job, worker


def _inline_png() -> str:
    return "data:image/png;base64," + base64.b64encode(badfiles.image_bytes("png", 24, 24)).decode()


def _keys(c: Container) -> list[str]:
    return list(c.store.iter_keys(""))


def _manifest(c: Container, key: str) -> Any:
    with c.store.open(key) as stream:
        return json.loads(stream.read())


def _asset_keys(c: Container, job_id: str) -> list[str]:
    with c.db.transaction() as s:
        rows = s.query(Asset).filter(Asset.job_id == job_id).all()
        return sorted(str(a.key) for a in rows if a.key)


def _ocfl_files(where: layout.JobLayout) -> list[str]:
    """The storage root's and the object's own files (besides the job's content)."""
    root, storage = where.object_root, where.storage_root
    return [
        f"{storage}/0=ocfl_1.1",
        f"{storage}/ocfl_layout.json",
        f"{storage}/extensions/0003-hash-and-id-n-tuple-storage-layout/config.json",
        f"{root}/0=ocfl_object_1.1",
        f"{root}/inventory.json",
        f"{root}/inventory.json.sha512",
        f"{root}/v1/inventory.json",
        f"{root}/v1/inventory.json.sha512",
    ]


def _archive_in_root_layout(c: Container, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs archived from now on are written as the release before projects wrote them."""
    monkeypatch.setattr(
        pipeline, "job_layout", lambda _store, job, **_: layout.JobLayout.of(job, root=True)
    )


@pytest.mark.damages_archive
def test_a_project_job_is_archived_under_its_project_prefix(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    archive_url: str,
) -> None:
    c = make(archive_url=archive_url)
    _project(c, "alpha")
    job, worker = _waiting(
        c,
        "alpha",
        # One input given inline (stored at acceptance), one fetched at archive time.
        init_image=_inline_png(),
        init_image_2=fileserver.put("/in.png", badfiles.image_bytes("png", 24, 24)),
    )
    _deliver(
        c,
        job,
        [fileserver.put(f"/{i}.png", badfiles.image_bytes("png", 20 + i, 20)) for i in range(2)],
    )
    done = _settle(c, worker, job.id)
    assert done.status == "archived"

    where = layout.JobLayout.object(done.id, "alpha")
    directory = where.prefix()
    assert directory.startswith("projects/alpha/") and directory.endswith("/v1/content")
    assert done.manifest_key == f"{directory}/manifest.json"
    assert sorted(_keys(c)) == sorted(
        [
            *_ocfl_files(where),
            f"{directory}/0.png",
            f"{directory}/1.png",
            f"{directory}/inputs/0.png",
            f"{directory}/inputs/1.png",
            f"{directory}/thumbs/0.webp",
            f"{directory}/thumbs/1.webp",
            f"{directory}/manifest.json",
            f"{directory}/manifest.json.sig",
        ]
    )
    if archive_url.startswith("s3://"):
        assert c.store.uri(done.manifest_key).startswith("s3://") and "/vault/projects/alpha/" in (
            c.store.uri(done.manifest_key)
        )
    manifest = _manifest(c, done.manifest_key)
    assert manifest["project"] == "alpha"

    verifier = c.archiver.signer.verifier
    [report] = run_audit(c.db, c.store, verifier=verifier)
    assert report.ok and report.signature == "valid" and report.checked == 6, report
    [bucket] = run_bucket_audit(c.store, verifier)
    assert bucket.ok and bucket.job_id == done.id and bucket.checked == 6, bucket

    # Something stray in the quarantine directory of the job's object is found.
    stray = where.output_key(9, "png", quarantine=True)
    c.store.put_bytes(stray, b"stray", content_type="image/png", metadata={})
    assert run_audit(c.db, c.store, verifier=verifier)[0].unlisted == [stray]
    assert run_bucket_audit(c.store, verifier)[0].unlisted == [stray]


def test_quarantined_outputs_stay_under_the_project(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    archive_url: str,
) -> None:
    c = make(archive_url=archive_url, nsfw_policy=NsfwPolicy.QUARANTINE)
    _project(c, "alpha")
    job, worker = _waiting(c, "alpha")
    _deliver(
        c, job, [fileserver.put("/n.png", badfiles.image_bytes("png"))], nsfw_content_detected=True
    )
    done = _settle(c, worker, job.id)
    assert done.status == "archived"
    where = layout.JobLayout.object(done.id, "alpha")
    assert sorted(_keys(c)) == sorted(
        [
            *_ocfl_files(where),
            where.manifest_key(),
            where.manifest_key() + ".sig",
            f"{where.prefix()}/quarantine/0.png",  # in the job's object, and no thumbnail
        ]
    )
    verifier = c.archiver.signer.verifier
    assert run_audit(c.db, c.store, verifier=verifier)[0].ok
    [bucket] = run_bucket_audit(c.store, verifier)
    assert bucket.ok and bucket.checked == 1


def test_a_job_archived_before_projects_stays_readable_and_auditable(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    archive_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = make(archive_url=archive_url)
    with monkeypatch.context() as patched:
        _archive_in_root_layout(c, patched)
        old, worker = _waiting(
            c, init_image=fileserver.put("/old-in.png", badfiles.image_bytes("png", 24, 24))
        )
        _deliver(c, old, [fileserver.put("/old.png", badfiles.image_bytes("png", 20, 20))])
        old = _settle(c, worker, old.id)
    directory = f"{old.created_at:%Y/%m/%d}/{old.id}"
    assert old.status == "archived" and old.manifest_key == f"{directory}/manifest.json"
    assert _asset_keys(c, old.id) == [
        f"{directory}/0.png",
        f"{directory}/inputs/0.png",
        f"{directory}/thumbs/0.webp",
    ]
    # A job of the same project archived now is an object in the project's storage root.
    new, worker = _waiting(c)
    _deliver(c, new, [fileserver.put("/new.png", badfiles.image_bytes("png", 20, 20))])
    new = _settle(c, worker, new.id)
    assert new.manifest_key == layout.JobLayout.of(new).manifest_key()

    # Readable: the API serves the old job's assets from where they are.
    client: FlaskClient = create_app(container=c).test_client()
    shown = client.get(f"/v1/jobs/{old.id}", headers=AUTH).get_json()
    assert shown["manifest_key"] == old.manifest_key
    assert {a["key"] for a in shown["assets"]} <= set(_asset_keys(c, old.id))
    for key in _asset_keys(c, old.id):
        with c.store.open(key) as stream:
            assert stream.read()

    # Auditable: from the database and from the bucket alone, both layouts.
    verifier = c.archiver.signer.verifier
    reports = {r.job_id: r for r in run_audit(c.db, c.store, verifier=verifier)}
    assert reports[old.id].ok and reports[old.id].checked == 3, reports[old.id]
    assert reports[new.id].ok
    assert client.get(f"/v1/jobs/{old.id}/audit", headers=AUTH).get_json()["ok"] is True
    bucket = {r.manifest_key: r for r in run_bucket_audit(c.store, verifier)}
    assert set(bucket) == {old.manifest_key, new.manifest_key}
    assert all(r.ok for r in bucket.values()), bucket
    assert bucket[old.manifest_key].job_id == old.id and bucket[old.manifest_key].checked == 3

    # The audit of an old job looks in the old job's directories.
    stray = f"quarantine/{directory}/9.png"
    c.store.put_bytes(stray, b"stray", content_type="image/png", metadata={})
    reports = {r.job_id: r for r in run_audit(c.db, c.store, verifier=verifier)}
    assert reports[old.id].unlisted == [stray] and reports[new.id].ok
    assert bucket_unlisted(c, verifier) == {old.manifest_key: [stray], new.manifest_key: []}


def bucket_unlisted(c: Container, verifier: Any) -> dict[str | None, list[str]]:
    return {r.manifest_key: r.unlisted for r in run_bucket_audit(c.store, verifier)}


def test_a_retried_archive_of_a_job_begun_before_projects_keeps_its_keys(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    archive_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c = make(archive_url=archive_url)
    with monkeypatch.context() as patched:
        # The earlier release stored the outputs, their thumbnails and the input, then
        # failed before the manifest.
        _archive_in_root_layout(c, patched)

        def fail(*_: Any) -> bytes:
            raise PermanentError("the store refused the manifest", code="store_refused")

        patched.setattr(pipeline.Archiver, "_write_manifest", fail)
        job, worker = _waiting(
            c, init_image=fileserver.put("/in.png", badfiles.image_bytes("png", 24, 24))
        )
        _deliver(c, job, [fileserver.put("/o.png", badfiles.image_bytes("png", 20, 20))])
        failed = _settle(c, worker, job.id)
    assert failed.status == "failed"
    directory = f"{failed.created_at:%Y/%m/%d}/{failed.id}"
    before = _asset_keys(c, job.id)
    assert before == [
        f"{directory}/0.png",
        f"{directory}/inputs/0.png",
        f"{directory}/thumbs/0.webp",
    ]

    # After the upgrade, an operator retries it: archived again, in the layout it began in.
    assert retry_job(c.db, c.queue, job.id).action is RetryAction.REARCHIVE
    done = _settle(c, worker, job.id)
    assert done.status == "archived"
    assert done.manifest_key == f"{directory}/manifest.json"
    assert _asset_keys(c, job.id) == before
    assert not [k for k in _keys(c) if k.startswith("projects/")]
    assert _manifest(c, done.manifest_key)["project"] == DEFAULT_PROJECT
    verifier = c.archiver.signer.verifier
    assert run_audit(c.db, c.store, verifier=verifier)[0].ok
    assert run_bucket_audit(c.store, verifier)[0].ok


@pytest.mark.parametrize("begun", [True, False], ids=["objects-unrecorded", "nothing-stored"])
def test_a_job_created_before_the_upgrade_goes_under_its_project_only_if_nothing_was_stored(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    begun: bool,
) -> None:
    c = make()
    job, worker = _waiting(c)
    with c.db.transaction() as s:
        # Created before migration 0007 made the default project.
        default = s.get(Project, DEFAULT_PROJECT)
        assert default is not None
        get_job(s, job.id, for_update=True).created_at = default.created_at - timedelta(days=40)
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    image = badfiles.image_bytes("png", 20, 20)
    root = layout.JobLayout.of(job, root=True)
    if begun:
        # A worker of the earlier release stored the output and died before recording it.
        c.store.put_bytes(root.output_key(0, "png"), image, content_type="image/png", metadata={})
    _deliver(c, job, [fileserver.put("/o.png", image)])
    done = _settle(c, worker, job.id)
    assert done.status == "archived"
    where = root if begun else layout.JobLayout.of(job)
    assert done.manifest_key == where.manifest_key()
    assert sorted(_keys(c)) == sorted(
        ([] if begun else _ocfl_files(where))
        + [
            where.output_key(0, "png"),
            where.thumb_key(0),
            where.manifest_key(),
            where.manifest_key() + ".sig",
        ]
    )
    assert run_audit(c.db, c.store, verifier=c.archiver.signer.verifier)[0].ok


def test_layout_keys_parse_back() -> None:
    day = utcnow().date()
    for project in (None, "alpha", "quarantine"):
        where = layout.JobLayout("job1", day, project)
        for key in (where.manifest_key(), where.thumb_key(2), where.input_key(0, "png")):
            assert layout.parse(key) == where and not layout.is_quarantined(key)
        quarantined = where.output_key(0, "png", quarantine=True)
        assert layout.parse(quarantined) == where and layout.is_quarantined(quarantined)
    assert layout.parse("projects/alpha/manifest.json") is None
    assert layout.parse("2026/13/01/job1/manifest.json") is None
    for project in ("alpha", "quarantine"):
        where = layout.JobLayout.object("job1", project)
        assert (
            where.ocfl
            and where.object_root
            and where.object_root.startswith(f"projects/{project}/")
        )
        for key in (
            where.manifest_key(),
            where.thumb_key(2),
            f"{where.object_root}/inventory.json",
        ):
            assert layout.parse(key) == where and not layout.is_quarantined(key)
        quarantined = where.output_key(0, "png", quarantine=True)
        assert layout.parse(quarantined) == where and layout.is_quarantined(quarantined)
    # Only the path the 0003 layout gives the id: another hash is no object of ours.
    assert layout.parse("projects/alpha/000/000/000/urn%3agenvault%3ajob%3ajob1/v1/x") is None
