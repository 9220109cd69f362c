"""Tables: projects and their keys, jobs, the callbacks that answer them, their archived
assets, the task queue, events, and the audit log."""

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
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.db import search
from service.db.enums import JobStatus, TaskKind, TaskStatus
from service.db.types import UTCDateTime, utcnow

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


# Every row that existed before projects belongs to this one (migration 0007).
DEFAULT_PROJECT = "default"


class Project(Base):
    """The unit of isolation: it owns jobs, event endpoints (and their events) and keys.

    The slug is the project's permanent id: rows refer to it, and it names the project's
    archive prefix, so it never changes (there is no rename).
    """

    __tablename__ = "projects"

    slug: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A scoped credential. Only a keyed hash of its secret is kept (access/keys.py)."""

    __tablename__ = "api_keys"

    # The public part of the key (gvk_{id}_...): found by primary key, then the hash compared.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # None: every project (admins only).
    project: Mapped[str | None] = mapped_column(ForeignKey("projects.slug"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One administrative action or sign-in. Append-only: triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(40))
    project: Mapped[str | None] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_log_action_id", "action", "id"),
        Index("ix_audit_log_actor_id", "actor", "id"),
    )


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project: Mapped[str] = mapped_column(
        ForeignKey("projects.slug"), default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT
    )
    track_id: Mapped[str] = mapped_column(String(64), unique=True)
    # Indexed by ix_jobs_endpoint_id and ix_jobs_status_id, which lead with these (0006).
    endpoint: Mapped[str] = mapped_column(String(100))
    status: Mapped[JobStatus] = mapped_column(_str_enum(JobStatus, 16))
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
    # What manifest.json hashed to when written: a manifest rewritten in the bucket (with
    # its objects' digests to match) no longer hashes to this.
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    result_callback_id: Mapped[int | None] = mapped_column(BigId)
    # Unique within the job's project (uq_jobs_project_idempotency_key, migration 0007).
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    submitted_at: Mapped[datetime | None]
    # Written and committed before every call to the provider: an attempt on record with no
    # answer means the provider may have been paid, so the job is not resubmitted blindly.
    submit_attempted_at: Mapped[datetime | None]
    submit_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    archived_at: Mapped[datetime | None]
    # When the job was erased (DELETE /v1/jobs/{id}); its row stays so the id still answers.
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_jobs_status_updated", "status", "updated_at"),
        # A project's newest-first pages, filtered or not (migration 0007; every list acts
        # in one project, so these replace 0003's status/id and endpoint/id).
        Index("ix_jobs_project_id", "project", "id"),
        Index("ix_jobs_project_status_id", "project", "status", "id"),
        Index("ix_jobs_project_endpoint_id", "project", "endpoint", "id"),
        UniqueConstraint("project", "idempotency_key", name="uq_jobs_project_idempotency_key"),
        # The gallery's q on PostgreSQL (migration 0009; service/db/search.py). On SQLite the
        # same search reads the FTS5 table jobs_fts, which no model describes.
        Index(search.PG_INDEX, text(search.PG_VECTOR), postgresql_using="gin").ddl_if(
            dialect="postgresql"
        ),
    )


class Callback(Base):
    """Every answer a provider gave about a job: webhook bodies, submit and poll responses."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Indexed by uq_callbacks_body, which leads with it (0006).
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"))
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]]  # as received, secrets removed
    result: Mapped[dict[str, Any]]  # the normalised ProviderResult the archive works from
    body_sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A webhook callback the worker has not applied to its job yet (jobs/applying.py).
    pending: Mapped[bool] = mapped_column(default=False, server_default=false())

    # The same body twice is the same callback: providers retry webhooks.
    __table_args__ = (
        UniqueConstraint("job_id", "source", "body_sha256", name="uq_callbacks_body"),
        # Only the pending ones (0011): the worker finds them at the same cost at any size.
        # PostgreSQL's only: SQLite finds them above a floor (db/pending_callbacks.py, 0012).
        Index("ix_callbacks_pending", "id", postgresql_where=text("pending")).ddl_if(
            dialect="postgresql"
        ),
    )


class Asset(Base):
    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))  # output | input | thumb (derived)
    index: Mapped[int] = mapped_column(Integer)
    key: Mapped[str | None] = mapped_column(Text)  # None when the NSFW policy skipped it
    source_url: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # C2PA Content Credentials read when archived: {present, valid, claim_generator,
    # digital_source_type} (migration 0010; None for rows of earlier releases and thumbs).
    content_credentials: Mapped[dict[str, Any] | None] = mapped_column(JSON)
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


class EventEndpoint(Base):
    """Where events go: a URL or a broker, the types it wants, and its signing secrets."""

    __tablename__ = "event_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project: Mapped[str] = mapped_column(
        ForeignKey("projects.slug"),
        default=DEFAULT_PROJECT,
        server_default=DEFAULT_PROJECT,
        index=True,
    )
    url: Mapped[str | None] = mapped_column(Text)  # type http only
    # http sqs sns eventbridge rabbitmq nats redis (service.events.destinations.registry)
    type: Mapped[str] = mapped_column(String(20), default="http", server_default="http")
    # The type's config, URL userinfo masked; None for http (its URL is the column above).
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Sealed (service.security.sealing): credentials, and the unmasked URLs of the config.
    credentials: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(20), default="standard", server_default="standard")
    links: Mapped[str] = mapped_column(String(20), default="fresh", server_default="fresh")
    # Consecutive configuration failures (missing queue, refused credentials) since the last
    # success: they disable the endpoint sooner than other failures.
    config_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    event_types: Mapped[list[str] | None] = mapped_column(JSON)  # None: every type
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    # Stored because signing needs them; never logged, never in a list response.
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None]
    failing_since: Mapped[datetime | None]  # first failure after the last success
    last_success_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Event(Base):
    """The outbox: written in the transaction of the change it reports."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), index=True)
    # The job's project: an event goes only to that project's endpoints.
    project: Mapped[str] = mapped_column(
        String(40), default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT
    )
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_events_project_id", "project", "id"),)


class EventDelivery(Base):
    """One event to one endpoint: pending until a 2xx (succeeded) or the schedule ends."""

    __tablename__ = "event_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"), index=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("event_endpoints.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # pending | succeeded | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # since the last (re)send
    next_attempt_at: Mapped[datetime | None]
    # Set while an attempt is on the wire: bounds the attempts in flight per endpoint.
    sending_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_event_deliveries_pair"),
        Index("ix_event_deliveries_status", "status", "created_at"),
        Index("ix_event_deliveries_endpoint_sending", "endpoint_id", "sending_until"),
    )


class DeliveryAttempt(Base):
    __tablename__ = "event_delivery_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("event_deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    response_status: Mapped[int | None] = mapped_column(Integer)
    # What a broker answered on success: SQS/SNS MessageId, EventBridge EventId, NATS sequence.
    receipt: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
