"""The job as JSON (the shape of the public contract, declared in service.api.schemas)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.api.schemas import AssetOut, JobError, JobOut
from service.db.models import Asset, Job
from service.storage.base import ArchiveStore


def job_out(job: Job, assets: Iterable[Asset], store: ArchiveStore, expires_in: int) -> JobOut:
    outputs = sorted((a for a in assets if a.role == "output"), key=lambda a: a.index)
    return JobOut(
        id=job.id,
        project=job.project,
        track_id=job.track_id,
        endpoint=job.endpoint,
        status=job.status,
        created_at=job.created_at,
        updated_at=job.updated_at,
        provider_request_id=job.provider_request_id,
        error=(
            JobError(code=job.error_code, message=job.error_message or "")
            if job.error_code
            else None
        ),
        metadata=job.meta,
        nsfw_content_detected=job.nsfw,
        assets=[
            AssetOut(
                index=a.index,
                key=a.key,
                uri=store.uri(a.key) if a.key else None,
                url=store.url(a.key, expires_in) if a.key else None,
                sha256=a.sha256,
                size=a.size,
                content_type=a.content_type,
                width=a.width,
                height=a.height,
            )
            for a in outputs
        ],
        manifest_key=job.manifest_key,
    )


def job_json(
    job: Job, assets: Iterable[Asset], store: ArchiveStore, expires_in: int
) -> dict[str, Any]:
    """The job as the API answers it, as plain JSON data (for the CLI)."""
    return job_out(job, assets, store, expires_in).model_dump(mode="json")
