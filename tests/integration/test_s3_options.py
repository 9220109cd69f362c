"""What S3Store sends beyond the contract, read back with plain boto3 from a moto server."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from service.errors import ConfigError
from service.storage.base import ObjectExists, ObjectMissing, StorageError
from service.storage.s3 import S3Store
from service.storage.url import ArchiveLocation, parse_archive_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024


@pytest.fixture
def s3(s3_env: str) -> S3Client:
    return boto3.client("s3")


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_checksum_and_sha256_metadata_on_read_back(
    s3_bucket: str, s3: S3Client, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    digest = _write(tmp_path / "a.png", data)
    S3Store(s3_bucket, "pre").put_file(
        "a.png", tmp_path / "a.png", sha256=digest, content_type="image/png", metadata={}
    )

    head = s3.head_object(Bucket=s3_bucket, Key="pre/a.png", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    assert head["Metadata"] == {"sha256": digest}
    assert head["ContentType"] == "image/png"
    assert s3.get_object(Bucket=s3_bucket, Key="pre/a.png")["Body"].read() == data


def test_multipart_upload(s3_bucket: str, s3: S3Client, tmp_path: Path) -> None:
    store = S3Store(s3_bucket, multipart_threshold=5 * MIB, part_size=5 * MIB)
    data = os.urandom(11 * MIB)
    digest = _write(tmp_path / "big.png", data)

    store.put_file(
        "big.png", tmp_path / "big.png", sha256=digest, content_type="image/png", metadata={}
    )

    head = s3.head_object(Bucket=s3_bucket, Key="big.png", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    assert head["Metadata"]["sha256"] == digest
    # Three parts went up, each with its own checksum; the object's is a composite.
    assert head["ETag"].strip('"').endswith("-3")
    assert store.head("big.png").sha256 == digest
    with store.open("big.png") as body:
        assert hashlib.sha256(body.read()).hexdigest() == digest

    # If-None-Match on CompleteMultipartUpload refuses the replay, and the upload is aborted.
    with pytest.raises(ObjectExists):
        store.put_file(
            "big.png", tmp_path / "big.png", sha256=digest, content_type="image/png", metadata={}
        )
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_multipart_with_wrong_sha256_uploads_nothing(
    s3_bucket: str, s3: S3Client, tmp_path: Path
) -> None:
    store = S3Store(s3_bucket, multipart_threshold=5 * MIB, part_size=5 * MIB)
    _write(tmp_path / "big.png", os.urandom(6 * MIB))

    with pytest.raises(StorageError):
        store.put_file(
            "big.png", tmp_path / "big.png", sha256="0" * 64, content_type="image/png", metadata={}
        )
    with pytest.raises(ObjectMissing):
        store.head("big.png")
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_sse_and_storage_class(s3_bucket: str, s3: S3Client, tmp_path: Path) -> None:
    store = S3Store(s3_bucket, sse="AES256", storage_class="STANDARD_IA")
    store.put_bytes("m.json", b"{}", content_type="application/json", metadata={})

    head = s3.head_object(Bucket=s3_bucket, Key="m.json")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"


def test_sse_and_storage_class_on_multipart(s3_bucket: str, s3: S3Client, tmp_path: Path) -> None:
    store = S3Store(
        s3_bucket,
        sse="AES256",
        storage_class="STANDARD_IA",
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    digest = _write(tmp_path / "big.png", os.urandom(6 * MIB))
    store.put_file(
        "big.png", tmp_path / "big.png", sha256=digest, content_type="image/png", metadata={}
    )

    head = s3.head_object(Bucket=s3_bucket, Key="big.png")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"


def test_object_lock(s3_env: str, s3: S3Client) -> None:
    bucket = f"genvault-lock-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = S3Store(bucket, object_lock_mode="GOVERNANCE", object_lock_days=1)

    before = datetime.now(UTC)
    store.put_bytes("m.json", b"{}", content_type="application/json", metadata={})

    head = s3.head_object(Bucket=bucket, Key="m.json")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert before + timedelta(days=1) - timedelta(seconds=5) <= until
    assert until <= datetime.now(UTC) + timedelta(days=1, seconds=5)


def test_lock_mode_without_days_is_refused() -> None:
    with pytest.raises(ConfigError, match="GENVAULT_S3_OBJECT_LOCK_DAYS"):
        S3Store("bucket", object_lock_mode="GOVERNANCE")


def test_head_without_metadata_falls_back_to_the_object_checksum(
    s3_bucket: str, s3: S3Client
) -> None:
    # An object written by another tool, with a full-object checksum but no sha256 metadata.
    data = b"written elsewhere"
    s3.put_object(Bucket=s3_bucket, Key="other.txt", Body=data, ChecksumAlgorithm="SHA256")

    assert S3Store(s3_bucket).head("other.txt").sha256 == hashlib.sha256(data).hexdigest()


def test_url_is_clamped_to_seven_days(s3_bucket: str) -> None:
    url = S3Store(s3_bucket).url("a.png", 30 * 24 * 3600)

    assert "X-Amz-Expires=604800" in url


def test_check_fails_for_a_missing_bucket(s3_env: str) -> None:
    with pytest.raises(StorageError) as caught:
        S3Store("genvault-no-such-bucket").check()
    assert not isinstance(caught.value, ObjectMissing)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://my-bucket", ArchiveLocation("s3", bucket="my-bucket", prefix="")),
        ("s3://my-bucket/", ArchiveLocation("s3", bucket="my-bucket", prefix="")),
        (
            "s3://my-bucket/genvault/prod/",
            ArchiveLocation("s3", bucket="my-bucket", prefix="genvault/prod"),
        ),
        ("S3://my.bucket/a", ArchiveLocation("s3", bucket="my.bucket", prefix="a")),
        ("file:///srv/archive", ArchiveLocation("file", path=Path("/srv/archive"))),
        ("file:///srv/my%20archive", ArchiveLocation("file", path=Path("/srv/my archive"))),
    ],
)
def test_parse_archive_url(url: str, expected: ArchiveLocation) -> None:
    assert parse_archive_url(url) == expected


def test_parse_relative_file_url_is_under_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert parse_archive_url("file://var/archive") == ArchiveLocation(
        "file", path=tmp_path / "var" / "archive"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "no scheme"),
        ("/var/archive", "no scheme"),
        ("http://example.com/archive", "scheme 'http'"),
        ("gs://bucket", "scheme 'gs'"),
        ("file://", "needs a path"),
        ("s3://", "not a valid S3 bucket name"),
        ("s3://Bad_Bucket", "not a valid S3 bucket name"),
        ("s3://ab", "not a valid S3 bucket name"),
        ("s3://bucket//double", "empty or dot segment"),
        ("s3://bucket/a/../b", "empty or dot segment"),
        ("s3://AKIAEXAMPLE:hunter2@bucket/p", "bucket name only"),
    ],
)
def test_parse_archive_url_refuses(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_archive_url(url)
    assert "\n" not in str(caught.value)
    assert "GENVAULT_ARCHIVE_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)
