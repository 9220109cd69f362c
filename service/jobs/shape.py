"""A job as JSON: the shape the API answers with and every job event carries.

It lives with the jobs, below both the HTTP layer (service.api.schemas re-exports it for the
OpenAPI document) and the event outbox (service.events.outbox snapshots jobs with it), so
neither reaches into the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, Field, PlainSerializer, WithJsonSchema

from service.archive import layout
from service.db.models import Asset, Job
from service.jobs.states import JobStatus
from service.storage.base import ArchiveStore

# ISO 8601 with the +00:00 offset, as the API has always answered.
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda d: d.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class ContentCredentials(BaseModel):
    """The image's C2PA Content Credentials as read when it was archived."""

    present: bool
    valid: bool | None = Field(description="null when they could not be checked")
    claim_generator: str | None
    digital_source_type: str | None = Field(description="an IPTC digitalSourceType URI")


class AssetOut(BaseModel):
    """One archived output image."""

    index: int
    key: str | None = Field(
        description="relative to the archive root (manifests stay relocatable); "
        "null when the NSFW policy skipped the image"
    )
    uri: str | None = Field(
        description="full location: s3://BUCKET/PREFIX/KEY or file:///ABS/PATH; null with key"
    )
    url: str | None = Field(description="a time-limited link anyone holding it can GET")
    sha256: str
    size: int
    content_type: str
    width: int
    height: int
    content_credentials: ContentCredentials | None = Field(
        default=None, description="null for an image archived before they were read"
    )


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    """A job: what was asked, where it stands, and what was archived."""

    id: str
    project: str = Field(description="the project that owns the job (its slug)")
    track_id: str
    endpoint: str
    status: JobStatus
    created_at: Timestamp
    updated_at: Timestamp
    provider_request_id: str | None
    error: JobError | None
    metadata: dict[str, Any]
    nsfw_content_detected: bool | None
    assets: list[AssetOut]
    manifest_key: str | None
    object_uri: str | None = Field(
        default=None,
        description="the root of the job's OCFL object (`s3://…` or `file:///…`); null for "
        "a job not archived, or archived by a release before OCFL",
    )
    deleted_at: Timestamp | None = Field(
        default=None, description="when the job was erased (status `deleted`); else null"
    )


class AssetRow(Protocol):
    """What job_out reads of an asset: an Asset, or a row of these columns."""

    @property
    def role(self) -> str: ...
    @property
    def index(self) -> int: ...
    @property
    def key(self) -> str | None: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def content_type(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def content_credentials(self) -> dict[str, Any] | None: ...


def job_out(job: Job, assets: Iterable[AssetRow], store: ArchiveStore, expires_in: int) -> JobOut:
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
                content_credentials=a.content_credentials,
            )
            for a in outputs
        ],
        manifest_key=job.manifest_key,
        object_uri=object_uri(job.manifest_key, store),
        deleted_at=job.deleted_at,
    )


def object_uri(manifest_key: str | None, store: ArchiveStore) -> str | None:
    """The root of the OCFL object whose manifest is ``manifest_key``; None outside one."""
    where = layout.parse(manifest_key) if manifest_key else None
    root = where.object_root if where is not None else None
    return store.uri(root) if root else None


def job_json(
    job: Job, assets: Iterable[Asset], store: ArchiveStore, expires_in: int
) -> dict[str, Any]:
    """The job as the API answers it, as plain JSON data (for the CLI)."""
    return job_out(job, assets, store, expires_in).model_dump(mode="json")
