"""Every archived job an OCFL 1.1 object, checked by ocfl-py (a validator we did not write).

On the file archive and on moto's S3 server: the storage root and the object's structure, a
flipped byte and a missing root inventory failing the validator, an interrupted commit
completed by the next attempt, and a coordinated rewrite of an image with its inventory
that OCFL accepts and genvault's audit does not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest

from service.app import create_app
from service.archive import layout
from service.archive.audit import run_audit, run_bucket_audit
from service.archive.ocfl import inventory, naming
from service.archive.ocfl import objects as ocfl_objects
from service.errors import TransientError
from service.storage.base import ArchiveStore, StorageUnavailable
from service.wiring import Container
from tests.integration.test_archive import _container, _deliver, _job_waiting, _settle, sandbox
from tests.support import badfiles
from tests.support.app import AUTH
from tests.support.fileserver import FileServer
from tests.support.validators import validate_ocfl_object

__all__ = ["sandbox"]  # the fixture, shared with test_archive


@pytest.fixture(params=["file", "s3"])
def archive(request: pytest.FixtureRequest, tmp_path: Path, sandbox: str) -> Iterator[Container]:
    overrides: dict[str, Any] = {}
    if request.param == "file":
        overrides["archive_url"] = f"file://{tmp_path / 'archive'}"
    bucket = request.getfixturevalue("s3_bucket") if request.param == "s3" else "unused"
    c = _container(tmp_path, bucket, sandbox, **overrides)
    try:
        yield c
    finally:
        c.close()


def _archived(c: Container, fileserver: FileServer, count: int = 2) -> Any:
    job, worker = _job_waiting(c)
    urls = [
        fileserver.put(f"/{job.id}-{i}.png", badfiles.image_bytes("png", 20 + i, 20))
        for i in range(count)
    ]
    _deliver(c, job, urls)
    done = _settle(c, worker, job.id)
    assert done.status == "archived", done.error_message
    return done


def _read(store: ArchiveStore, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def _rewrite(c: Container, key: str, body: bytes) -> None:
    """Replace an object behind the store's back (it is write-once)."""
    if c.settings.archive_url.startswith("file://"):
        Path(unquote(urlsplit(c.store.uri(key)).path)).write_bytes(body)
        return
    bucket, _, prefix = c.settings.archive_url.removeprefix("s3://").partition("/")
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=bucket, Key=f"{prefix}/{key}", Body=body
    )


def _delete(c: Container, key: str) -> None:
    if c.settings.archive_url.startswith("file://"):
        Path(unquote(urlsplit(c.store.uri(key)).path)).unlink()
        return
    bucket, _, prefix = c.settings.archive_url.removeprefix("s3://").partition("/")
    boto3.client("s3", region_name="us-east-1").delete_object(Bucket=bucket, Key=f"{prefix}/{key}")


@pytest.mark.damages_archive
def test_an_archived_job_is_a_valid_ocfl_object(archive: Container, fileserver: FileServer) -> None:
    c = archive
    done = _archived(c, fileserver)
    where = layout.parse(done.manifest_key)
    assert where is not None and where.ocfl
    root = where.object_root
    assert root == f"projects/default/{naming.object_path('urn:genvault:job:' + done.id)}"
    assert root.endswith(f"/urn%3agenvault%3ajob%3a{done.id}")

    # The project's prefix is a storage root with a registered layout extension.
    assert _read(c.store, "projects/default/0=ocfl_1.1") == b"ocfl_1.1\n"
    layout_file = json.loads(_read(c.store, "projects/default/ocfl_layout.json"))
    assert layout_file["extension"] == "0003-hash-and-id-n-tuple-storage-layout"
    config = json.loads(
        _read(
            c.store,
            "projects/default/extensions/0003-hash-and-id-n-tuple-storage-layout/config.json",
        )
    )
    assert config["extensionName"] == layout_file["extension"]

    # Nothing under the object's root but OCFL's structure and the version's content.
    keys = sorted(k.removeprefix(root + "/") for k in c.store.iter_keys(root + "/"))
    structure = ["0=ocfl_object_1.1", "inventory.json", "inventory.json.sha512"]
    version = ["v1/inventory.json", "v1/inventory.json.sha512"]
    content = [k for k in keys if k.startswith("v1/content/")]
    assert keys == sorted(structure + version + content)
    assert {k.removeprefix("v1/content/") for k in content} == {
        "0.png",
        "1.png",
        "thumbs/0.webp",
        "thumbs/1.webp",
        "manifest.json",
        "manifest.json.sig",
    }

    body = _read(c.store, f"{root}/inventory.json")
    assert _read(c.store, f"{root}/v1/inventory.json") == body
    inv = json.loads(body)
    assert inv["id"] == f"urn:genvault:job:{done.id}" and inv["head"] == "v1"
    assert inv["digestAlgorithm"] == "sha512"
    # The fixity block carries the SHA-256 the asset rows (and S3's ChecksumSHA256) hold.
    client = create_app(container=c).test_client()
    job = client.get(f"/v1/jobs/{done.id}", headers=AUTH).get_json()
    fixity = {p: d for d, paths in inv["fixity"]["sha256"].items() for p in paths}
    for asset in job["assets"]:
        assert fixity[asset["key"].removeprefix(root + "/")] == asset["sha256"]
    assert job["object_uri"] == c.store.uri(root)
    manifest = json.loads(_read(c.store, done.manifest_key))
    assert manifest["object_id"] == inv["id"]

    assert validate_ocfl_object(job["object_uri"]).returncode == 0
    # A flipped byte in an image fails it.
    image = f"{root}/v1/content/0.png"
    original = _read(c.store, image)
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    _rewrite(c, image, bytes(flipped))
    bad = validate_ocfl_object(job["object_uri"])
    assert bad.returncode != 0, bad.stdout
    _rewrite(c, image, original)
    assert validate_ocfl_object(job["object_uri"]).returncode == 0
    # So does a missing root inventory (the commit marker).
    _delete(c, f"{root}/inventory.json")
    assert validate_ocfl_object(job["object_uri"]).returncode != 0
    [report] = run_audit(c.db, c.store, verifier=c.archiver.signer.verifier)
    assert report.missing == [f"{root}/inventory.json"]


class RefusingStore:
    """The real store, refusing the writes ``refuse`` picks (a store outage mid-commit)."""

    def __init__(self, store: ArchiveStore, refuse: Callable[[str], bool]) -> None:
        self._store = store
        self.refuse = refuse

    def put_bytes(self, key: str, data: bytes, **kwargs: Any) -> None:
        if self.refuse(key):
            raise StorageUnavailable(f"refused {key} (test)")
        self._store.put_bytes(key, data, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_an_interrupted_commit_is_completed_by_the_next_attempt(
    tmp_path: Path, sandbox: str, fileserver: FileServer
) -> None:
    c = _container(tmp_path, "unused", sandbox, archive_url=f"file://{tmp_path / 'archive'}")
    try:
        job, worker = _job_waiting(c)
        _deliver(c, job, [fileserver.put("/i.png", badfiles.image_bytes("png", 30, 30))])
        real = c.archiver.store
        where = layout.JobLayout.object(job.id, "default")
        root = where.object_root
        assert root is not None
        # The store goes away after the version's inventory, before the root's.
        c.archiver.store = RefusingStore(real, lambda k: k == f"{root}/inventory.json")  # type: ignore[assignment]
        with pytest.raises(TransientError):
            c.archiver.archive(job.id)
        written = sorted(real.iter_keys(root + "/"))
        assert f"{root}/v1/inventory.json" in written
        assert f"{root}/inventory.json" not in written
        # Incomplete: no reader takes it for an object, nor does the validator.
        assert ocfl_objects.read(real, root) is None
        assert validate_ocfl_object(real.uri(root)).returncode != 0

        c.archiver.store = real
        done = _settle(c, worker, job.id)
        assert done.status == "archived"
        after = sorted(real.iter_keys(root + "/"))
        assert set(written) < set(after)
        assert validate_ocfl_object(real.uri(root)).returncode == 0
        [report] = run_audit(c.db, c.store, verifier=c.archiver.signer.verifier)
        assert report.ok, report.as_json()
    finally:
        c.close()


def test_a_coordinated_rewrite_passes_ocfl_validation_but_fails_the_audit(
    archive: Container, fileserver: FileServer
) -> None:
    c = archive
    done = _archived(c, fileserver, count=1)
    where = layout.parse(done.manifest_key)
    assert where is not None
    root = where.object_root
    assert root is not None
    # Another valid image in place of 0.png, and the inventory (both copies, both
    # sidecars) rebuilt to agree with it: a consistent OCFL object.
    forged = badfiles.image_bytes("png", 41, 17)
    _rewrite(c, f"{root}/v1/content/0.png", forged)
    files = ocfl_objects.content(c.store, root, read_back=True)
    found = ocfl_objects.read(c.store, root)
    assert found is not None
    body = inventory.build(found.object_id, found.created, files, "rewritten")
    for directory in (f"{root}/v1", root):
        _rewrite(c, f"{directory}/inventory.json", body)
        _rewrite(c, f"{directory}/inventory.json.sha512", inventory.sidecar(body))
    assert validate_ocfl_object(c.store.uri(root)).returncode == 0

    verifier = c.archiver.signer.verifier
    [report] = run_audit(c.db, c.store, verifier=verifier)
    assert not report.ok
    assert [a["key"] for a in report.altered] == [f"{root}/v1/content/0.png"]
    assert report.altered[0]["actual_sha256"] == hashlib.sha256(forged).hexdigest()
    # From the bucket alone: the signed manifest still names the original image.
    [bucket] = run_bucket_audit(c.store, verifier)
    assert not bucket.ok and [a["key"] for a in bucket.altered] == [f"{root}/v1/content/0.png"]
