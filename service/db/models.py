"""Tables: jobs, the callbacks that answer them, their archived assets, and the task queue."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.db.types import UTCDateTime, utcnow
from service.jobs.states import JobStatus
from service.tasks.kinds import TaskKind
from service.tasks.status import TaskStatus

# BIGINT on PostgreSQL, but INTEGER on SQLite, where only "INTEGER PRIMARY KEY" autoincrements.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _str_enum(enum_type: type[enum.StrEnum], length: int) -> Enum:
    """A StrEnum column stored as its plain value in a VARCHAR (no database enum type)."""
    return Enum(
        enum_type,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    track_id: Mapped[str] = mapped_column(String(64), unique=True)
    endpoint: Mapped[str] = mapped_column(String(100), index=True)
    status: Mapped[JobStatus] = mapped_column(_str_enum(JobStatus, 16), index=True)
    params: Mapped[dict[str, Any]]
    # "metadata" is reserved by SQLAlchemy's declarative base; the column keeps the name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")
    provider_request_id: Mapped[str | None] = mapped_column(String(100))
    fetch_url: Mapped[str | None] = mapped_column(Text)
    poll_after: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    nsfw: Mapped[bool | None] = mapped_column(Boolean)
    manifest_key: Mapped[str | None] = mapped_column(Text)
    result_callback_id: Mapped[int | None] = mapped_column(BigId)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    submitted_at: Mapped[datetime | None]
    # Written and committed before every call to the provider: an attempt on record with no
    # answer means the provider may have been paid, so the job is not resubmitted blindly.
    submit_attempted_at: Mapped[datetime | None]
    submit_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    archived_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_jobs_status_updated", "status", "updated_at"),)


class Callback(Base):
    """Every answer a provider gave about a job: webhook bodies, submit and poll responses."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]]  # as received, secrets removed
    result: Mapped[dict[str, Any]]  # the normalised ProviderResult the archive works from
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    # The same body twice is the same callback: providers retry webhooks.
    __table_args__ = (
        UniqueConstraint("job_id", "source", "body_sha256", name="uq_callbacks_body"),
    )


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))  # output | input
    index: Mapped[int] = mapped_column(Integer)
    key: Mapped[str | None] = mapped_column(Text)  # None when the NSFW policy skipped it
    source_url: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("job_id", "role", "index", name="uq_assets_slot"),)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[TaskKind] = mapped_column(_str_enum(TaskKind, 32))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    payload: Mapped[dict[str, Any]]
    status: Mapped[TaskStatus] = mapped_column(_str_enum(TaskStatus, 16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime]
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # One live task per (kind, job): a second webhook cannot queue a second archive.
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_tasks_claim", "status", "run_after"),)
