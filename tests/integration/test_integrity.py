"""Outputs first, tamper evidence that survives a coordinated rewrite, bucket-only audit.

Against real servers: moto's S3 server and the file store, the sandbox provider, a loopback
file server for images, and `python -m service` for the commands.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from service.app import create_app
from service.archive.audit import run_audit, run_bucket_audit
from service.db.models import Task
from service.jobs.records import get_job
from service.jobs.submission import create_job
from service.security.signing import signature_key
from service.wiring import Container
from tests.integration.test_archive import _deliver, _settle, make, sandbox  # noqa: F401
from tests.support import badfiles
from tests.support.app import AUTH, SECRET
from tests.support.fileserver import FileServer

IMG2IMG = "modelslab/img2img"


def _noise_png(width: int, height: int) -> bytes:
    """A valid PNG that compresses badly (random pixels), unlike badfiles' images."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def _img2img_waiting(c: Container, **params: Any) -> Any:
    job, _ = create_job(
        c.db,
        c.queue,
        endpoint=IMG2IMG,
        params={
            "model_id": "flux-kontext-dev",
            "prompt": "[sandbox:processing,eta=600,webhook-never] x",
            **params,
        },
        metadata={},
    )
    worker = c.worker()
    worker.run_once()  # submit
    with c.db.transaction() as s:
        job = get_job(s, job.id)
    assert job.status == "processing"
    return job, worker


def test_an_img2img_job_whose_init_image_answers_404_is_archived_at_once(
    make: Any,  # noqa: F811
    fileserver: FileServer,
) -> None:
    c = make()
    gone = fileserver.base_url + "/gone.png"  # the file server answers 404
    job, worker = _img2img_waiting(c, init_image=gone, init_image_2="http://10.1.2.3/x.png")
    _deliver(c, job, [fileserver.put("/out.png", badfiles.image_bytes("png", 32, 32))])
    assert worker.run_once() == 1  # one archive run, no retry
    with c.db.transaction() as s:
        done = get_job(s, job.id)
        attempts = [t.attempts for t in s.query(Task).filter(Task.job_id == job.id)]
    assert done.status == "archived", (done.error_code, done.error_message)
    assert max(attempts) == 1
    body = _read(c, done.manifest_key)
    assert [a["index"] for a in body["assets"]] == [0] and body["assets"][0]["key"]
    by_index = {entry["index"]: entry for entry in body["inputs"]}
    assert by_index[0]["reason"] == "http_404" and by_index[0]["stored"] is False
    assert by_index[0]["source_url"] == gone
    assert by_index[1]["reason"].startswith("refused:")
    [report] = run_audit(c.db, c.store, verifier=c.archiver.signer.verifier)
    assert report.ok and report.signature == "valid", report


def test_inputs_that_fail_in_any_way_are_listed_with_their_reason(
    make: Any,  # noqa: F811
    fileserver: FileServer,
) -> None:
    c = make(download_max_bytes=4096)
    big = fileserver.put("/big.png", _noise_png(64, 64))
    not_image = fileserver.put("/text.png", b"just text, not an image", "image/png")
    job, worker = _img2img_waiting(c, init_image=big, init_image_2=not_image)
    _deliver(c, job, [fileserver.put("/o.png", badfiles.image_bytes("png", 16, 16))])
    done = _settle(c, worker, job.id)
    assert done.status == "archived"
    reasons = {e["index"]: e["reason"] for e in _read(c, done.manifest_key)["inputs"]}
    assert reasons[0] == "download_too_large"
    assert reasons[1] not in ("", None, "unavailable")


def _read(c: Container, key: str) -> Any:
    with c.store.open(key) as stream:
        return json.loads(stream.read())


def _archived(c: Container, fileserver: FileServer, count: int = 2) -> Any:
    job, worker = _img2img_waiting(
        c, init_image=fileserver.put("/in.png", badfiles.image_bytes("png", 24, 24))
    )
    urls = [
        fileserver.put(f"/{i}.png", badfiles.image_bytes("png", 20 + i, 20)) for i in range(count)
    ]
    _deliver(c, job, urls)
    done = _settle(c, worker, job.id)
    assert done.status == "archived"
    assert done.manifest_sha256 is not None
    return done


def _overwrite(c: Container, s3_bucket: str, key: str, data: bytes) -> None:
    """Change an archived object behind genvault's back (write-once does not stop an admin)."""
    if c.settings.archive_url.startswith("s3://"):
        boto3.client("s3", region_name="us-east-1").put_object(
            Bucket=s3_bucket, Key=f"vault/{key}", Body=data
        )
    else:
        path = Path(c.settings.archive_url.removeprefix("file://")) / key
        path.chmod(0o644)
        path.write_bytes(data)


@pytest.fixture(params=["s3", "file"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path, s3_bucket: str) -> str:
    if request.param == "s3":
        return f"s3://{s3_bucket}/vault"
    return f"file://{tmp_path / 'files'}"


@pytest.mark.damages_archive
def test_a_coordinated_rewrite_of_an_image_and_its_manifest_is_reported(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    s3_bucket: str,
    archive_url: str,
) -> None:
    c = make(archive_url=archive_url)
    done = _archived(c, fileserver)
    verifier = c.archiver.signer.verifier
    [clean] = run_audit(c.db, c.store, verifier=verifier)
    # Two outputs, one input, two thumbnails.
    assert clean.ok and clean.signature == "valid" and clean.checked == 5
    [bucket_clean] = run_bucket_audit(c.store, verifier)
    assert bucket_clean.ok and bucket_clean.job_id == done.id

    # Replace 0.png with another valid image, and make the manifest agree with it.
    image_key = done.manifest_key.rsplit("/", 1)[0] + "/0.png"
    forged = _noise_png(20, 20)
    manifest = _read(c, done.manifest_key)
    [entry] = [e for e in manifest["assets"] if e["key"] == image_key]
    entry["sha256"], entry["size"] = hashlib.sha256(forged).hexdigest(), len(forged)
    _overwrite(c, s3_bucket, image_key, forged)
    _overwrite(c, s3_bucket, done.manifest_key, json.dumps(manifest, indent=2).encode())

    [report] = run_audit(c.db, c.store, verifier=verifier)
    assert not report.ok
    altered = {a["key"]: a for a in report.altered}
    assert altered[image_key]["differs_from"] == ["database"]
    assert done.manifest_key in altered  # not the manifest that was written
    assert report.signature.startswith("invalid")
    api = create_app(container=c).test_client().get(f"/v1/jobs/{done.id}/audit", headers=AUTH)
    assert api.get_json()["ok"] is False
    # From the bucket alone the objects agree with the rewritten manifest: the signature
    # tells, and so does the OCFL inventory, which was not rewritten with them (a rewrite
    # of the inventory too: tests/integration/test_ocfl.py).
    [bucket] = run_bucket_audit(c.store, verifier)
    assert not bucket.missing
    assert {a["problem"] for a in bucket.altered} == {"differs from the OCFL inventory"}
    assert not bucket.ok and bucket.signature.startswith("invalid")


@pytest.mark.damages_archive
def test_derived_objects_are_listed_and_checked(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    s3_bucket: str,
) -> None:
    c = make()
    done = _archived(c, fileserver, count=1)
    directory = done.manifest_key.rsplit("/", 1)[0]
    thumb_key = f"{directory}/thumbs/0.webp"
    manifest = _read(c, done.manifest_key)
    assert [d["key"] for d in manifest["derived"]] == [thumb_key]

    verifier = c.archiver.signer.verifier
    [report] = run_audit(c.db, c.store, verifier=verifier)
    assert report.ok and thumb_key not in report.unlisted, report
    assert report.checked == 3  # output, input, thumbnail
    assert run_bucket_audit(c.store, verifier)[0].ok

    _overwrite(c, s3_bucket, thumb_key, b"RIFF\x00\x00\x00\x00WEBPswapped!!")
    [report] = run_audit(c.db, c.store, verifier=verifier)
    assert [a["key"] for a in report.altered] == [thumb_key]
    assert [a["key"] for a in run_bucket_audit(c.store, verifier)[0].altered] == [thumb_key]


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.damages_archive
def test_bucket_only_audit_needs_only_the_bucket_and_the_public_key(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    c = make()
    done = _archived(c, fileserver, count=1)
    served = create_app(container=c).test_client().get("/v1/signing-key", headers=AUTH)
    assert served.status_code == 200
    key = served.get_json()
    assert key["algorithm"] == "Ed25519" and key["public_key"]
    no_token = create_app(container=c).test_client().get("/v1/signing-key")
    assert no_token.status_code == 401

    base = {
        "PATH": str(Path(sys.executable).parent),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
    }
    printed = _cli("signing-key", env={**base, "GENVAULT_SECRET_KEY": SECRET}, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == key["public_key"]

    # No database (a URL that does not exist) and no secret: the bucket and the public key.
    bucket_env = {
        **base,
        "GENVAULT_ARCHIVE_URL": c.settings.archive_url,
        "GENVAULT_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
    }
    ok = _cli(
        "audit", "--bucket-only", "--public-key", key["public_key"], env=bucket_env, cwd=tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.splitlines()[0])["signature"] == "valid"

    image_key = done.manifest_key.rsplit("/", 1)[0] + "/0.png"
    _overwrite(c, s3_bucket, image_key, _noise_png(20, 20))
    bad = _cli(
        "audit", "--bucket-only", "--public-key", key["public_key"], env=bucket_env, cwd=tmp_path
    )
    assert bad.returncode == 1
    assert "1 jobs with problems" in bad.stderr and "1 altered" in bad.stderr

    missing_key = _cli("audit", "--bucket-only", env=bucket_env, cwd=tmp_path)
    assert missing_key.returncode == 2 and "--public-key" in missing_key.stderr


@pytest.mark.damages_archive
def test_a_deleted_signature_is_reported_unless_the_job_predates_signing(
    make: Any,  # noqa: F811
    fileserver: FileServer,
    s3_bucket: str,
) -> None:
    c = make()
    done = _archived(c, fileserver, count=1)
    boto3.client("s3", region_name="us-east-1").delete_object(
        Bucket=s3_bucket, Key=f"vault/{signature_key(done.manifest_key)}"
    )
    verifier = c.archiver.signer.verifier
    [report] = run_audit(c.db, c.store, verifier=verifier)
    assert not report.ok and report.signature == "missing"
    # A job archived before migration 0002 has no recorded digest and was never signed.
    with c.db.transaction() as s:
        get_job(s, done.id).manifest_sha256 = None
    [legacy] = run_audit(c.db, c.store, verifier=verifier)
    assert legacy.signature.startswith("unsigned")
    # (Such a job was never an OCFL object; this one's inventory still lists the file.)
    assert legacy.missing == [signature_key(done.manifest_key)] and not legacy.altered
    # From the bucket alone nothing vouches for its age: missing is missing.
    [bucket] = run_bucket_audit(c.store, verifier)
    assert not bucket.ok and bucket.signature == "missing"
