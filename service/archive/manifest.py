"""The manifest: what an archived job is, written last so its presence means "complete"."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from service import __version__
from service.db.models import Asset, Callback, Job
from service.security.redaction import redact

MANIFEST_VERSION = 1


def asset_entry(asset: Asset, expected_size: tuple[int, int] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": asset.index,
        "key": asset.key,
        "source_url": asset.source_url,
        "sha256": asset.sha256,
        "size": asset.size,
        "content_type": asset.content_type,
        "width": asset.width,
        "height": asset.height,
    }
    if asset.role == "output":
        # C2PA Content Credentials as read when archived (provenance.py); null: not read.
        entry["content_credentials"] = asset.content_credentials
    if asset.key is None:
        entry["stored"] = False
        entry["reason"] = "nsfw content skipped by GENVAULT_NSFW_POLICY=skip"
    if expected_size is not None and (asset.width, asset.height) != expected_size:
        entry["dimension_mismatch"] = {
            "expected_width": expected_size[0],
            "expected_height": expected_size[1],
        }
    return entry


def build(
    job: Job,
    answer: Callback,
    outputs: Iterable[Asset],
    inputs: Iterable[Asset],
    *,
    input_errors: Iterable[Mapping[str, Any]] = (),
    expected_size: tuple[int, int] | None,
    archived_at: datetime,
    archive_seconds: float,
    nsfw_policy: str,
    derived: Iterable[Mapping[str, Any]] = (),
    object_id: str | None = None,
) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "service": {"name": "genvault", "version": __version__},
        "job_id": job.id,
        # Since OCFL (additive): the id of the OCFL object this manifest is part of.
        "object_id": object_id,
        # Since projects (additive): the project the job belongs to.
        "project": job.project,
        "track_id": job.track_id,
        "endpoint": job.endpoint,
        "metadata": job.meta,
        "request": {"params": redact(job.params)},
        "provider": {
            "request_id": job.provider_request_id,
            "response_source": answer.source,
            "response": redact(answer.body),
        },
        "nsfw_content_detected": job.nsfw,
        "nsfw_policy": nsfw_policy,
        "assets": [asset_entry(a, expected_size) for a in outputs],
        "inputs": [asset_entry(a) for a in inputs] + list(input_errors),
        # Made by genvault from the outputs (thumbnails), not by the provider.
        "derived": list(derived),
        "timings": {
            "created_at": job.created_at.isoformat(),
            "submitted_at": job.submitted_at.isoformat() if job.submitted_at else None,
            "result_received_at": answer.received_at.isoformat(),
            "archived_at": archived_at.isoformat(),
            "archive_seconds": round(archive_seconds, 3),
        },
    }


def dumps(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode()
