"""The database rows a verified manifest, or a signed tombstone, gives back (reindex.py).

Column values, not ORM rows: reindex builds the rows inside each batch's transaction, so a
batch that rolls back can be tried again one job at a time. What the rows hold is what the
pipeline recorded when it archived the job, read from the manifest it signed: the job's
``updated_at`` is its ``archived_at`` (pipeline._finish), a thumbnail's row names the output
it shows (thumbnails.Thumbnailer), and the provider's answer is its callback.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.access.store import SLUG
from service.archive import layout, thumbnails
from service.archive.tombstone import KIND as TOMBSTONE_KIND
from service.db.models import DEFAULT_PROJECT
from service.jobs.results import body_digest
from service.jobs.states import JobStatus

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Record:
    """One job's rows: the job, its assets and the provider's answer, as column values."""

    key: str  # where it was read: the manifest's key, or the tombstone's
    job: dict[str, Any]
    assets: list[dict[str, Any]] = field(default_factory=list)
    callback: dict[str, Any] | None = None


def from_manifest(where: layout.JobLayout, key: str, body: bytes) -> Record:
    """The job's rows from its verified manifest.

    Raises ValueError (KeyError, TypeError) for a manifest that names another job, object or
    project than where it was found, or that lacks what a job row needs.
    """
    manifest: Any = json.loads(body)
    if manifest["manifest_version"] != MANIFEST_VERSION:
        raise ValueError(f"unknown manifest_version {manifest['manifest_version']!r}")
    if manifest["job_id"] != where.job_id:
        raise ValueError(f"names job {manifest['job_id']!r}, found as {where.job_id!r}")
    # Manifests of releases before projects name none: their jobs are default's.
    project = manifest.get("project") or DEFAULT_PROJECT
    if not isinstance(project, str) or not SLUG.fullmatch(project):
        raise ValueError(f"names project {project!r}, which is no project slug")
    if where.project is not None and project != where.project:
        raise ValueError(f"names project {project!r}, found under {where.project!r}")
    if where.ocfl and manifest.get("object_id") != where.object_id:
        raise ValueError(f"names object {manifest.get('object_id')!r}")
    timings = manifest["timings"]
    archived = _time(timings["archived_at"])
    provider = manifest.get("provider") or {}
    job = {
        "id": where.job_id,
        "project": project,
        "track_id": str(manifest["track_id"]),
        "endpoint": str(manifest["endpoint"]),
        "status": JobStatus.ARCHIVED,
        "params": dict(manifest["request"]["params"]),  # redacted when it was written
        "meta": dict(manifest.get("metadata") or {}),
        "provider_request_id": provider.get("request_id"),
        "nsfw": manifest.get("nsfw_content_detected"),
        "manifest_key": key,
        "manifest_sha256": hashlib.sha256(body).hexdigest(),
        "created_at": _time(timings["created_at"]),
        "submitted_at": _time(timings["submitted_at"]) if timings.get("submitted_at") else None,
        "archived_at": archived,
        "updated_at": archived,
    }
    outputs = [_asset("output", entry, archived) for entry in manifest["assets"]]
    inputs = [
        _asset("input", entry, archived)
        for entry in manifest.get("inputs") or []
        # Inputs that could not be had are listed with their reason, and have no row.
        if entry.get("key") and entry.get("sha256") and entry.get("stored", True)
    ]
    thumbs = [
        _thumb(entry, archived)
        for entry in manifest.get("derived") or []
        if isinstance(entry, Mapping) and entry.get("kind") == "thumbnail"
    ]
    return Record(key, job, [*outputs, *inputs, *thumbs], _callback(manifest, outputs))


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _asset(role: str, entry: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    return {
        "role": role,
        "index": int(entry["index"]),
        "key": entry.get("key"),  # None: an output the NSFW policy skipped
        "source_url": str(entry.get("source_url") or ""),
        "sha256": str(entry["sha256"]),
        "size": int(entry["size"]),
        "content_type": str(entry["content_type"]),
        "width": int(entry["width"]),
        "height": int(entry["height"]),
        # Outputs since C2PA was read; None for inputs and for earlier manifests.
        "content_credentials": entry.get("content_credentials"),
        "created_at": at,
    }


def _thumb(entry: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """A thumbnail's row as the thumbnailer records it: the output's index, and its key."""
    row = _asset(thumbnails.ROLE, {**entry, "index": entry["of"]["index"]}, at)
    return row | {"source_url": str(entry["of"]["key"]), "content_credentials": None}


def _callback(manifest: Mapping[str, Any], outputs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The provider's answer the job was archived from, as the manifest keeps it (redacted)."""
    provider = manifest.get("provider") or {}
    body, source = provider.get("response"), provider.get("response_source")
    received = manifest["timings"].get("result_received_at")
    if not isinstance(body, dict) or not isinstance(source, str) or not received:
        return None
    result = {
        "status": "success",
        "request_id": provider.get("request_id"),
        "outputs": [a["source_url"] for a in sorted(outputs, key=lambda a: a["index"])],
        "nsfw": manifest.get("nsfw_content_detected"),
    }
    return {
        "source": source,
        "status": "success",
        "body": body,
        "result": result,
        "body_sha256": body_digest(body),
        "received_at": _time(received),
    }


def from_tombstone(key: str, data: bytes, job_id: str, project: str) -> Record:
    """An erased job's row from its verified tombstone: status deleted, and nothing else.

    Raises ValueError (KeyError, TypeError) for one that names another job.
    """
    stone: Any = json.loads(data)
    if stone["type"] != TOMBSTONE_KIND or (stone["job_id"], stone["project"]) != (
        job_id,
        project,
    ):
        raise ValueError("it names another job")
    deleted = _time(stone["deleted_at"])
    created = stone.get("created_at")
    job = {
        "id": job_id,
        "project": project,
        # What a tombstone does not carry: a stand-in track id (unique, as the column
        # wants), and the creation time the job id itself begins with (records.new_job_id).
        "track_id": str(stone.get("track_id") or f"erased-{job_id}"),
        "endpoint": str(stone.get("endpoint") or "unknown"),
        "provider_request_id": stone.get("provider_request_id"),
        "status": JobStatus.DELETED,
        "params": {},
        "meta": {},
        "created_at": _time(created) if created else _id_time(job_id, deleted),
        "updated_at": deleted,
        "deleted_at": deleted,
    }
    return Record(key, job)


def _id_time(job_id: str, default: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(job_id[:12], 16) / 1000, UTC)
    except ValueError:
        return default
