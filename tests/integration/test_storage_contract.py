"""One contract, every ArchiveStore: the filesystem in tmp_path and S3 on a moto server."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from urllib.request import url2pathname

import boto3
import pytest
import requests

from service.security.tokens import verify_file_signature
from service.storage.base import (
    ArchiveStore,
    ObjectExists,
    ObjectMissing,
    StorageError,
)
from service.storage.filesystem import FilesystemStore
from service.storage.s3 import S3Store

SECRET = b"contract-test-secret"
URL_BASE = "http://genvault.test"
KEY = "2026/01/02/job-1/0.png"


@dataclass
class Backend:
    store: ArchiveStore
    # GETs a URL from store.url(): over HTTP for S3; for files, what the web app's /files
    # route does (check the signature, then stream the object), since that route lives there.
    fetch: Callable[[str], bytes]


def _fetch_http(url: str) -> bytes:
    answer = requests.get(url, timeout=10)
    answer.raise_for_status()
    return answer.content


def _filesystem(tmp_path: Path) -> Backend:
    store = FilesystemStore(tmp_path / "archive", url_base=URL_BASE, secret=SECRET)

    def fetch(url: str) -> bytes:
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == URL_BASE
        assert parts.path.startswith("/files/")
        key = unquote(parts.path.removeprefix("/files/"))
        query = parse_qs(parts.query)
        expires, sig = int(query["expires"][0]), query["sig"][0]
        assert verify_file_signature(SECRET, key, expires, sig, now=time.time())
        # The signature binds the key and the expiry: neither can be swapped.
        assert not verify_file_signature(SECRET, key + "x", expires, sig, now=time.time())
        assert not verify_file_signature(SECRET, key, expires + 1, sig, now=time.time())
        assert not verify_file_signature(SECRET, key, expires, sig, now=expires + 1)
        with store.open(key) as body:
            return body.read()

    return Backend(store, fetch)


@pytest.fixture(params=["filesystem", "s3", "s3-prefixed"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "filesystem":
        return _filesystem(tmp_path)
    # Only the S3 params start the moto server.
    bucket = request.getfixturevalue("s3_bucket")
    prefix = "archive/v1" if request.param == "s3-prefixed" else ""
    return Backend(S3Store(bucket, prefix), _fetch_http)


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, bytes, str]:
    data = os.urandom(256 * 1024)
    path = tmp_path / "image.png"
    path.write_bytes(data)
    return path, data, hashlib.sha256(data).hexdigest()


def test_put_file_then_head_and_open(backend: Backend, image: tuple[Path, bytes, str]) -> None:
    path, data, digest = image
    backend.store.put_file(
        KEY, path, sha256=digest, content_type="image/png", metadata={"job-id": "job-1"}
    )

    info = backend.store.head(KEY)
    assert (info.key, info.size, info.sha256) == (KEY, len(data), digest)
    assert info.content_type == "image/png"
    assert dict(info.metadata) == {"job-id": "job-1"}
    with backend.store.open(KEY) as body:
        assert body.read() == data


def test_second_put_is_refused_and_keeps_the_original(
    backend: Backend, image: tuple[Path, bytes, str], tmp_path: Path
) -> None:
    path, data, digest = image
    backend.store.put_file(KEY, path, sha256=digest, content_type="image/png", metadata={})
    other = tmp_path / "other.png"
    other.write_bytes(b"replayed callback, different bytes")

    with pytest.raises(ObjectExists):
        backend.store.put_file(
            KEY,
            other,
            sha256=hashlib.sha256(other.read_bytes()).hexdigest(),
            content_type="image/jpeg",
            metadata={"job-id": "intruder"},
        )
    with pytest.raises(ObjectExists):
        backend.store.put_bytes(KEY, b"x", content_type="text/plain", metadata={})

    info = backend.store.head(KEY)
    assert (info.sha256, info.content_type, dict(info.metadata)) == (digest, "image/png", {})
    with backend.store.open(KEY) as body:
        assert body.read() == data


def test_wrong_sha256_is_refused_and_leaves_nothing(
    backend: Backend, image: tuple[Path, bytes, str]
) -> None:
    path, _, digest = image
    wrong = hashlib.sha256(b"something else").hexdigest()
    assert wrong != digest

    with pytest.raises(StorageError) as caught:
        backend.store.put_file(KEY, path, sha256=wrong, content_type="image/png", metadata={})
    assert not isinstance(caught.value, ObjectExists)

    with pytest.raises(ObjectMissing):
        backend.store.head(KEY)
    assert list(backend.store.iter_keys("")) == []
    # The key is still free for the right bytes.
    backend.store.put_file(KEY, path, sha256=digest, content_type="image/png", metadata={})
    assert backend.store.head(KEY).sha256 == digest


def test_put_bytes(backend: Backend) -> None:
    manifest = b'{"job_id": "job-1"}'
    key = "2026/01/02/job-1/manifest.json"
    backend.store.put_bytes(
        key, manifest, content_type="application/json", metadata={"kind": "manifest"}
    )

    info = backend.store.head(key)
    assert info.size == len(manifest)
    assert info.sha256 == hashlib.sha256(manifest).hexdigest()
    assert info.content_type == "application/json"
    assert dict(info.metadata) == {"kind": "manifest"}
    with backend.store.open(key) as body:
        assert body.read() == manifest


def test_iter_keys_lists_only_the_prefix_in_order(backend: Backend) -> None:
    keys = [
        "2026/01/02/job-b/1.png",
        "2026/01/02/job-b/0.png",
        "2026/01/02/job-a/manifest.json",
        "2026/01/02/job-a-2/0.png",  # "-" sorts before "/": a trap for directory walks
        "2026/01/03/job-c/0.png",
        "2025/12/31/job-z/0.png",
    ]
    for key in keys:
        backend.store.put_bytes(key, key.encode(), content_type="text/plain", metadata={})

    assert list(backend.store.iter_keys("2026/01/02/")) == [
        "2026/01/02/job-a-2/0.png",
        "2026/01/02/job-a/manifest.json",
        "2026/01/02/job-b/0.png",
        "2026/01/02/job-b/1.png",
    ]
    assert list(backend.store.iter_keys("2026/01/02/job-a")) == [
        "2026/01/02/job-a-2/0.png",
        "2026/01/02/job-a/manifest.json",
    ]
    assert list(backend.store.iter_keys("")) == sorted(keys)
    assert list(backend.store.iter_keys("2024/")) == []


@pytest.mark.parametrize(
    "missing",
    [
        "2026/01/02/nope/0.png",
        "2026/01/02/job-1",  # only a prefix of a stored key
        "2026/01/02/job-1/0.png/deeper",  # below a stored key
    ],
)
def test_missing_key(backend: Backend, missing: str) -> None:
    backend.store.put_bytes(KEY, b"png", content_type="image/png", metadata={})

    with pytest.raises(ObjectMissing):
        backend.store.head(missing)
    with pytest.raises(FileNotFoundError):
        backend.store.open(missing)


def test_url_serves_the_bytes(backend: Backend, image: tuple[Path, bytes, str]) -> None:
    path, data, digest = image
    backend.store.put_file(KEY, path, sha256=digest, content_type="image/png", metadata={})

    assert backend.fetch(backend.store.url(KEY, 300)) == data


def _read_uri(uri: str) -> bytes:
    """Read an object the way a user would, from its URI alone, without genvault."""
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        assert parts.netloc == ""
        return Path(url2pathname(parts.path)).read_bytes()
    # S3 URIs are not percent-encoded: everything after the bucket is the key, as the AWS
    # CLI reads them.
    assert uri.startswith("s3://"), uri
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    answer = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    return answer["Body"].read()


@pytest.mark.parametrize("key", [KEY, "2026/01/02/job 1#x/0.png"])
def test_uri_locates_the_object_without_genvault(
    backend: Backend, image: tuple[Path, bytes, str], key: str
) -> None:
    path, data, sha = image
    backend.store.put_file(key, path, sha256=sha, content_type="image/png", metadata={})
    uri = backend.store.uri(key)
    assert uri.startswith(("s3://", "file:///"))
    assert _read_uri(uri) == data


def test_check_passes(backend: Backend) -> None:
    backend.store.check()
    assert list(backend.store.iter_keys("")) == []  # the probe left nothing behind


def test_concurrent_writers_exactly_one_wins(backend: Backend, tmp_path: Path) -> None:
    writers = 8
    payloads = [f"writer {n} ".encode() * 4096 for n in range(writers)]
    paths = []
    for n, payload in enumerate(payloads):
        paths.append(tmp_path / f"writer-{n}.png")
        paths[-1].write_bytes(payload)
    start = threading.Barrier(writers)
    outcomes: list[str] = [""] * writers

    def write(n: int) -> None:
        start.wait()
        try:
            backend.store.put_file(
                KEY,
                paths[n],
                sha256=hashlib.sha256(payloads[n]).hexdigest(),
                content_type="image/png",
                metadata={"writer": str(n)},
            )
            outcomes[n] = "stored"
        except ObjectExists:
            outcomes[n] = "exists"
        except Exception as exc:
            outcomes[n] = repr(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["exists"] * (writers - 1) + ["stored"]
    winner = outcomes.index("stored")
    info = backend.store.head(KEY)
    assert info.metadata == {"writer": str(winner)}
    with backend.store.open(KEY) as body:
        assert body.read() == payloads[winner]
    assert list(backend.store.iter_keys("")) == [KEY]


# What only the filesystem store has to get right: it maps keys onto real paths.


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "archive", url_base=URL_BASE + "/", secret=SECRET)


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../escape", "a/../../escape", "a//b", "a/b/", "a\\b", "a/./b", ".meta"],
)
def test_filesystem_refuses_unsafe_keys(fs_store: FilesystemStore, key: str) -> None:
    with pytest.raises(StorageError):
        fs_store.put_bytes(key, b"x", content_type="text/plain", metadata={})
    with pytest.raises(StorageError):
        fs_store.head(key)
    assert not (fs_store.root.parent / "escape").exists()


def test_filesystem_leaves_no_temp_files_or_listed_sidecars(
    fs_store: FilesystemStore, image: tuple[Path, bytes, str]
) -> None:
    path, _, digest = image
    fs_store.put_file(KEY, path, sha256=digest, content_type="image/png", metadata={})
    with pytest.raises(StorageError):
        fs_store.put_file(
            "2026/01/02/job-1/1.png", path, sha256="0" * 64, content_type="x", metadata={}
        )

    # Nothing of the store's own beside an object (an OCFL object directory holds only its
    # files): labels live under the root's .meta/, temp files under .tmp/ (left empty).
    names = sorted(p.name for p in (fs_store.root / "2026/01/02/job-1").iterdir())
    assert names == ["0.png"]
    assert (fs_store.root / ".meta/2026/01/02/job-1/0.png.json").is_file()
    assert list((fs_store.root / ".tmp").iterdir()) == []
    assert list(fs_store.iter_keys("")) == [KEY]


def test_filesystem_head_survives_a_lost_sidecar(
    fs_store: FilesystemStore, image: tuple[Path, bytes, str]
) -> None:
    # A crash between the link (the commit) and the sidecar: the bytes still answer for
    # themselves, and the key stays taken.
    path, data, digest = image
    fs_store.put_file(KEY, path, sha256=digest, content_type="image/png", metadata={"A": "b"})
    assert fs_store.head(KEY).metadata == {"a": "b"}  # names lower-cased, as on S3
    sidecar = fs_store.root / ".meta/2026/01/02/job-1/0.png.json"
    # Archives of releases before OCFL kept the labels beside the object: still read.
    legacy = fs_store.root / "2026/01/02/job-1/.0.png.meta.json"
    sidecar.rename(legacy)
    assert fs_store.head(KEY).metadata == {"a": "b"}
    legacy.unlink()

    info = fs_store.head(KEY)
    assert (info.size, info.sha256, info.content_type) == (len(data), digest, None)
    with pytest.raises(ObjectExists):
        fs_store.put_file(KEY, path, sha256=digest, content_type="image/png", metadata={})


def test_filesystem_url_shape(fs_store: FilesystemStore) -> None:
    before = int(time.time())
    url = fs_store.url("2026/01/02/job 1/0.png", 600)

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        URL_BASE + "/files/2026/01/02/job%201/0.png"
    )
    query = parse_qs(parts.query)
    assert before + 600 <= int(query["expires"][0]) <= int(time.time()) + 600
    assert verify_file_signature(
        SECRET, "2026/01/02/job 1/0.png", int(query["expires"][0]), query["sig"][0], time.time()
    )


def test_filesystem_check_fails_on_an_unwritable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    store = FilesystemStore(blocker / "archive", url_base=URL_BASE, secret=SECRET)

    with pytest.raises(StorageError):
        store.check()
