"""The job as JSON (the shape of the public contract)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.db.models import Asset, Job
from service.storage.base import ArchiveStore


def job_json(
    job: Job, assets: Iterable[Asset], store: ArchiveStore, expires_in: int
) -> dict[str, Any]:
    outputs = sorted((a for a in assets if a.role == "output"), key=lambda a: a.index)
    return {
        "id": job.id,
        "track_id": job.track_id,
        "endpoint": job.endpoint,
        "status": job.status,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "provider_request_id": job.provider_request_id,
        "error": (
            {"code": job.error_code, "message": job.error_message} if job.error_code else None
        ),
        "metadata": job.meta,
        "nsfw_content_detected": job.nsfw,
        "assets": [
            {
                "index": a.index,
                "key": a.key,
                "url": store.url(a.key, expires_in) if a.key else None,
                "sha256": a.sha256,
                "size": a.size,
                "content_type": a.content_type,
                "width": a.width,
                "height": a.height,
            }
            for a in outputs
        ],
        "manifest_key": job.manifest_key,
    }
