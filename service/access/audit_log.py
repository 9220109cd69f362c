"""The audit log: one append-only row per administrative action and sign-in."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from service.db.models import AuditEntry
from service.db.types import utcnow
from service.security.redaction import redact


# The action names are not passwords, whatever the words in them.
class AuditAction(enum.StrEnum):
    PROJECT_CREATE = "project.create"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"
    ENDPOINT_CREATE = "endpoint.create"
    ENDPOINT_UPDATE = "endpoint.update"
    ENDPOINT_DELETE = "endpoint.delete"
    ENDPOINT_SECRET_READ = "endpoint.secret.read"  # noqa: S105
    ENDPOINT_SECRET_ROTATE = "endpoint.secret.rotate"  # noqa: S105
    ENDPOINT_RECOVER = "endpoint.recover"
    EVENT_RESEND = "event.resend"
    JOB_RETRY = "job.retry"
    JOB_DELETE = "job.delete"
    SIGNIN_SUCCESS = "signin.success"
    SIGNIN_REFUSED = "signin.refused"


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True)
class Origin:
    """Where a request came from, for its audit row."""

    remote_addr: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, remote_addr: str | None, given_request_id: str | None) -> Origin:
        """A request's origin: the caller's X-Request-Id when it is sane, else a new id."""
        given = given_request_id or ""
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        return cls(remote_addr=remote_addr, request_id=request_id)


def record(
    session: Session,
    action: AuditAction,
    *,
    actor: str,
    project: str | None,
    target: str | None,
    origin: Origin,
    outcome: str = "success",
    changes: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add the row to ``session``: it commits with the change it records, or not at all."""
    entry = AuditEntry(
        at=utcnow(),
        actor=actor[:300],
        action=action.value,
        project=project,
        target=target,
        outcome=outcome,
        remote_addr=origin.remote_addr,
        request_id=origin.request_id,
        # Secrets removed by the one redaction every stored thing goes through.
        changes=redact(dict(changes)) if changes is not None else None,
    )
    session.add(entry)
    return entry


@dataclass(frozen=True)
class AuditQuery:
    projects: frozenset[str] | None  # None: every project, and entries of none
    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    before_id: int | None = None


def select_entries(query: AuditQuery, limit: int) -> Select[AuditEntry]:
    """Newest first; ``actor`` matches the actor's beginning (``key:ID`` or ``user:email``)."""
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if query.projects is not None:
        stmt = stmt.where(AuditEntry.project.in_(sorted(query.projects)))
    if query.action:
        stmt = stmt.where(AuditEntry.action == query.action)
    if query.actor:
        escaped = query.actor.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(AuditEntry.actor.like(f"{escaped}%", escape="\\"))
    if query.since is not None:
        stmt = stmt.where(AuditEntry.at >= query.since)
    if query.before_id is not None:
        stmt = stmt.where(AuditEntry.id < query.before_id)
    return stmt
