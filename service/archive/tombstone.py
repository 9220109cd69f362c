"""Tombstones: the signed record an erased job leaves in the archive.

``tombstones/{project}/{job_id}.json`` holds who erased the job, when, why, and the key,
SHA-256 and size of every object removed; ``….json.sig`` beside it is its detached Ed25519
signature, the same document the manifests' signatures are (security/signing.py), so the
public key of ``GET /v1/signing-key`` verifies both. They live outside ``projects/{slug}/``
(each project's OCFL storage root), where nothing but OCFL objects may be.

Write-once like every object: an erasure that runs again after a crash keeps the tombstone
the first run wrote (it listed every object before any was removed) and only completes its
signature if that is what is missing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from service.security.signing import Signer, signature_key
from service.storage.base import ArchiveStore, ObjectExists, StorageError

TOMBSTONES = "tombstones"
KIND = "genvault.tombstone"
VERSION = 1
CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Removed:
    """One object an erasure removes. ``sha256`` and ``size`` are None for a key of which
    only older versions were left (its current version already a delete marker)."""

    key: str
    sha256: str | None
    size: int | None


def tombstone_key(project: str, job_id: str) -> str:
    return f"{TOMBSTONES}/{project}/{job_id}.json"


class _Job(Protocol):
    """What a tombstone names of the job (a Job row): its identity, never its content."""

    @property
    def id(self) -> str: ...
    @property
    def project(self) -> str: ...
    @property
    def track_id(self) -> str: ...
    @property
    def endpoint(self) -> str: ...
    @property
    def provider_request_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...


def render(
    job: _Job, *, actor: str, at: datetime, reason: str, removed: Sequence[Removed]
) -> bytes:
    """The tombstone's bytes: JSON, keys sorted, one trailing newline (signed as stored).

    The job's identity rides along (track id, endpoint, provider id, creation time) so that
    reindex can give an erased job its row back as it was; its params and metadata do not.
    """
    body: dict[str, Any] = {
        "type": KIND,
        "version": VERSION,
        "job_id": job.id,
        "project": job.project,
        "track_id": job.track_id,
        "endpoint": job.endpoint,
        "provider_request_id": job.provider_request_id,
        "created_at": job.created_at.isoformat(),
        "deleted_by": actor,
        "deleted_at": at.isoformat(),
        "reason": reason,
        "removed": [asdict(r) for r in removed],
    }
    return json.dumps(body, sort_keys=True, indent=2).encode() + b"\n"


def write(store: ArchiveStore, signer: Signer, key: str, data: bytes, job_id: str) -> bytes:
    """Store the tombstone and its signature, write-once; the bytes the archive keeps.

    A tombstone already there (an earlier run of the same erasure) is kept as it is, and
    its signature written if that run stopped before it.
    """
    metadata = {"job-id": job_id, "role": "tombstone"}
    try:
        store.put_bytes(key, data, content_type=CONTENT_TYPE, metadata=metadata)
    except ObjectExists:
        data = read(store, key)
        if json.loads(data).get("job_id") != job_id:
            raise StorageError(f"{key!r} is another job's tombstone") from None
    with contextlib.suppress(ObjectExists):  # signed by the earlier run
        store.put_bytes(
            signature_key(key), signer.sign(data), content_type=CONTENT_TYPE, metadata=metadata
        )
    return data


def read(store: ArchiveStore, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()
