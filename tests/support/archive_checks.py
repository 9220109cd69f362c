"""Checks shared by the end-to-end tests: the archive against its manifest, secrets, callbacks.

Also a loopback image origin: inputs (init_image, image_url) and hand-delivered outputs are
served from it, so a test decides exactly which bytes the service downloads.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3
import requests
from PIL import Image

from tests.support.stack import SECRET, Stack
from tests.support.validators import validate_ocfl_objects

# Every provider key of the stack contains "secret", and so does the webhook HMAC key.
SECRETS = ("ml-e2e-key-secret", "ml-enterprise-e2e-key-secret", "aiml-e2e-key-secret", SECRET)


def s3_client(stack: Stack) -> Any:
    return boto3.client(
        "s3", endpoint_url=stack.env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1"
    )


def job_keys(stack: Stack, job_id: str) -> list[str]:
    """Every object in the bucket that belongs to ``job_id``, sorted."""
    pages = (
        s3_client(stack)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=stack.bucket, Prefix=stack.prefix)
    )
    # A dated directory names the job; an OCFL object's directory is its encoded id.
    names = (f"/{job_id}/", f"%3a{job_id}/")
    return sorted(
        o["Key"]
        for p in pages
        for o in p.get("Contents", [])
        if any(name in o["Key"] for name in names)
    )


def content_keys(stack: Stack, job_id: str) -> list[str]:
    """The job's own files: ``job_keys`` without its OCFL object's structure (declaration
    and inventories), which ``verify_archive`` checks."""
    return [k for k in job_keys(stack, job_id) if "/v1/content/" in k or "%3a" not in k]


def _check_object(stack: Stack, entry: dict[str, Any]) -> bytes:
    """The object behind a manifest entry, checked against the entry's sha256/size/size."""
    obj = s3_client(stack).get_object(
        Bucket=stack.bucket, Key=f"{stack.prefix}/{entry['key']}", ChecksumMode="ENABLED"
    )
    data: bytes = obj["Body"].read()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert len(data) == entry["size"]
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (entry["width"], entry["height"])
        assert Image.MIME[img.format or ""] == entry["content_type"]
    assert obj["ContentType"] == entry["content_type"]
    assert obj["Metadata"]["sha256"] == entry["sha256"]
    return data


def verify_archive(stack: Stack, job: dict[str, Any], *, validate: bool = True) -> dict[str, Any]:
    """Read the manifest back from S3 and check every image (outputs and inputs) against it.

    ``validate``: also run ocfl-py over the job's object (a caller checking many jobs runs
    it once for all of them: ``validate_objects``).
    """
    s3 = s3_client(stack)
    manifest_key = f"{stack.prefix}/{job['manifest_key']}"
    manifest = json.loads(s3.get_object(Bucket=stack.bucket, Key=manifest_key)["Body"].read())
    assert manifest["job_id"] == job["id"] and manifest["track_id"] == job["track_id"]
    assert len(manifest["assets"]) == len(job["assets"]) > 0
    for entry, asset in zip(manifest["assets"], job["assets"], strict=True):
        assert entry["sha256"] == asset["sha256"] and entry["size"] == asset["size"]
        assert (entry["width"], entry["height"]) == (asset["width"], asset["height"])
        data = _check_object(stack, entry)
        # The presigned link in the job JSON serves the same bytes.
        assert requests.get(asset["url"], timeout=10).content == data
        # So does the full location, with a plain S3 client and nothing of genvault's.
        assert asset["uri"] == f"s3://{stack.bucket}/{stack.prefix}/{asset['key']}"
        bucket, _, key = asset["uri"].removeprefix("s3://").partition("/")
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    for entry in manifest["inputs"]:
        if entry.get("key"):
            assert "/inputs/" in entry["key"]
            _check_object(stack, entry)
    for entry in manifest.get("derived", []):
        # Thumbnails: beside the outputs, each pointing at the output it shows.
        assert entry["key"].endswith(f"/thumbs/{entry['of']['index']}.webp")
        assert entry["content_type"] == "image/webp" and max(entry["width"], entry["height"]) <= 256
        _check_object(stack, entry)
    expected = sorted(
        [manifest_key, manifest_key + ".sig"]
        + [
            f"{stack.prefix}/{e['key']}"
            for e in manifest["assets"] + manifest["inputs"] + manifest.get("derived", [])
            if e.get("key")
        ]
    )
    # The job is an OCFL object: its structure beside the content, and ocfl-py (a validator
    # genvault's developers did not write) takes it for a valid one.
    root = job["object_uri"].removeprefix(f"s3://{stack.bucket}/")
    assert manifest_key.startswith(f"{root}/v1/content/")
    structure = [
        f"{root}/{name}"
        for name in (
            "0=ocfl_object_1.1",
            "inventory.json",
            "inventory.json.sha512",
            "v1/inventory.json",
            "v1/inventory.json.sha512",
        )
    ]
    assert job_keys(stack, job["id"]) == sorted(expected + structure)
    if validate:
        validate_objects(stack, [job["object_uri"]])
    assert_no_secrets(json.dumps(manifest), json.dumps(job))
    return manifest


def validate_objects(stack: Stack, object_uris: list[str]) -> None:
    """ocfl-py over these objects of the stack's bucket, in one run: each must be VALID."""
    checked = validate_ocfl_objects(
        object_uris,
        endpoint_url=stack.env["AWS_ENDPOINT_URL_S3"],
        env={k: v for k, v in stack.env.items() if k.startswith("AWS_")},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def assert_logs_clean(stack: Stack) -> None:
    """No provider key, no webhook HMAC key and no webhook token in any process's log."""
    logs = stack.tail_logs(100_000)
    assert_no_secrets(logs)
    assert "token=" not in logs.replace("token=[redacted]", "")


def callbacks(stack: Stack, job_id: str) -> list[tuple[str, str]]:
    """(source, status) of every provider answer the service recorded for the job."""
    url = stack.env["GENVAULT_DATABASE_URL"]
    assert url.startswith("sqlite:///"), url
    with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10) as db:
        rows = db.execute(
            "SELECT source, status FROM callbacks WHERE job_id = ? ORDER BY id", (job_id,)
        ).fetchall()
    return [(str(source), str(status)) for source, status in rows]


def png_bytes(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class ImageOrigin:
    """A loopback HTTP server answering each path with the (content type, body) set for it."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, bytes]] = {}
        self.hits: dict[str, int] = {}
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                origin.hits[path] = origin.hits.get(path, 0) + 1
                content_type, body = origin.files.get(path, ("text/plain", b"not found"))
                self.send_response(200 if path in origin.files else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass  # quiet: pytest runs with warnings as errors and captures stderr anyway

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ImageOrigin:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path: str, body: bytes, content_type: str = "image/png") -> str:
        self.files[path] = (content_type, body)
        return self.url + path


def settle(stack: Stack, job: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
    """Wait until the job is archived or failed."""
    return stack.wait_status(job["id"], "archived", "failed", timeout=timeout)


def archived(stack: Stack, job: dict[str, Any], timeout: float = 20) -> dict[str, Any]:
    """Wait for the job and insist it was archived cleanly."""
    done = settle(stack, job, timeout)
    assert done["status"] == "archived", done
    assert done["error"] is None
    return done
