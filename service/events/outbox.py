"""The transactional outbox: events are rows written in the transaction of their cause.

Job transitions all go through ``jobs.records.advance``, which calls :func:`job_moved`. That
only notes the event on the job's session; the row itself is written at the next flush (a
``before_flush`` hook), so it carries the job as the transaction leaves it (the archive sets
``manifest_key`` just after advancing). A rolled-back transaction therefore leaves no event,
and a committed one always has its event and its delivery tasks: a crash between the two
cannot happen because there is no "between".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from service.db.models import Asset, Event, EventDelivery, EventEndpoint, Job, Task
from service.db.session import Database
from service.db.types import utcnow
from service.events.types import DeliveryStatus, EventType, new_event_id
from service.jobs.shape import job_json, object_uri
from service.jobs.states import JobStatus
from service.storage.base import ArchiveStore
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue
from service.tasks.status import TaskStatus

_PENDING = "genvault.events.pending"
# The delivery handler decides when to stop (the events retry schedule); reschedules while an
# endpoint is busy must never run into the generic attempt cap, hence a cap this high.
DELIVERY_MAX_ATTEMPTS = 100_000

FIRST_ATTEMPT_HEAD_START = timedelta(minutes=1)

_BEFORE_PROVIDER = (JobStatus.QUEUED, JobStatus.SUBMITTED)
_ACCEPTED = (JobStatus.PROCESSING, JobStatus.ARCHIVING)


def event_type_for(old: JobStatus, new: JobStatus) -> EventType | None:
    """Which event a job's move causes, if any."""
    if new is JobStatus.ARCHIVED:
        return EventType.JOB_ARCHIVED
    if new is JobStatus.FAILED:
        return EventType.JOB_FAILED
    if old in _BEFORE_PROVIDER and new in _ACCEPTED:
        # The provider's answer is recorded: it said processing, or success at once.
        return EventType.JOB_SUBMITTED
    return None


def job_moved(job: Job, old: JobStatus, new: JobStatus) -> None:
    """Note the event a transition causes on the job's session (written at flush)."""
    kind = event_type_for(old, new)
    session = object_session(job)
    if kind is None or session is None:
        return
    session.info.setdefault(_PENDING, []).append((kind, job))


def emit(
    session: Session,
    kind: EventType,
    data: Mapping[str, Any],
    *,
    project: str,
    job_id: str | None = None,
    exclude_endpoint: str | None = None,
) -> Event:
    """Write an event and one delivery (and task) per subscribed endpoint of ``project``."""
    row = Event(id=new_event_id(), type=kind.value, project=project, job_id=job_id, data=dict(data))
    row.created_at = utcnow()
    session.add(row)
    with session.no_autoflush:
        endpoints = session.execute(
            select(EventEndpoint.id, EventEndpoint.event_types).where(
                EventEndpoint.enabled.is_(True), EventEndpoint.project == project
            )
        ).all()
    for endpoint_id, types in endpoints:
        if endpoint_id == exclude_endpoint or (types is not None and kind.value not in types):
            continue
        add_delivery(session, row.id, endpoint_id)
    return row


def audit_failed(db: Database, job_id: str, findings: Mapping[str, Any]) -> None:
    """Emit ``audit.failed`` for a job whose archive did not check out."""
    with db.transaction() as session:
        project = session.execute(select(Job.project).where(Job.id == job_id)).scalar_one()
        emit(
            session,
            EventType.AUDIT_FAILED,
            {"job_id": job_id, "findings": dict(findings)},
            project=project,
            job_id=job_id,
        )


def add_delivery(session: Session, event_id: str, endpoint_id: str) -> None:
    now = utcnow()
    session.add(
        EventDelivery(
            event_id=event_id,
            endpoint_id=endpoint_id,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    session.add(
        Task(
            kind=TaskKind.DELIVER_EVENT,
            job_id=None,  # a delivery that gives up must not fail the job it reports
            payload={"event_id": event_id, "endpoint_id": endpoint_id},
            status=TaskStatus.QUEUED,
            attempts=0,
            max_attempts=DELIVERY_MAX_ATTEMPTS,
            # Claims go by run_after: a head start puts first attempts ahead of a backlog of
            # archives, as they are short (bounded by the events timeout) and their latency
            # is what receivers see.
            run_after=now - FIRST_ATTEMPT_HEAD_START,
            dedupe_key=delivery_key(event_id, endpoint_id),
            created_at=now,
            updated_at=now,
        )
    )
    # An ORM object rather than TaskQueue.enqueue's statement, as the outbox may call this
    # mid-flush (where no statement can run): say so, or the commit wakes no worker and the
    # delivery waits for the next claim or poll.
    TaskQueue.mark_enqueued(session)


def delivery_key(event_id: str, endpoint_id: str) -> str:
    return f"deliver:{event_id}:{endpoint_id}"


class _Unlinked:
    """Stands in for the store when the snapshot is taken: links are made at delivery,
    because a presigned URL taken now could expire before a late retry."""

    def url(self, key: str, expires_in: int) -> str | None:
        return None

    def uri(self, key: str) -> str | None:
        return None


def job_snapshot(session: Session, job: Job) -> dict[str, Any]:
    """The job as GET /v1/jobs/{id} shows it (links left to delivery), plus the manifest sha256."""
    with session.no_autoflush:
        assets = list(session.execute(select(Asset).where(Asset.job_id == job.id)).scalars())
    data = job_json(job, assets, cast(ArchiveStore, _Unlinked()), 0)
    data["status"] = str(job.status)
    data["manifest_sha256"] = job.manifest_sha256
    return data


def with_links(data: Mapping[str, Any], store: ArchiveStore, expires_in: int) -> dict[str, Any]:
    """The snapshot with each archived asset's link and location filled in, as job JSON has it."""
    out = dict(data)
    out["object_uri"] = object_uri(data.get("manifest_key"), store)
    assets: Iterable[Mapping[str, Any]] = data.get("assets") or ()
    out["assets"] = [
        {
            **a,
            "uri": store.uri(a["key"]) if a.get("key") else None,
            "url": store.url(a["key"], expires_in) if a.get("key") else None,
        }
        for a in assets
    ]
    return out


def _write_pending(session: Session, _context: Any, _instances: Any) -> None:
    pending: list[tuple[EventType, Job]] = session.info.pop(_PENDING, [])
    for kind, job in pending:
        emit(session, kind, job_snapshot(session, job), project=job.project, job_id=job.id)


def _forget(session: Session, *_args: Any) -> None:
    # A rolled-back transaction's events must not leak into the next one.
    session.info.pop(_PENDING, None)


# Registered once for every Session: wherever a transition happens (worker, API, reconciler,
# CLI), its event follows without the caller having to remember it.
sa_event.listen(Session, "before_flush", _write_pending)
sa_event.listen(Session, "after_soft_rollback", _forget)
sa_event.listen(Session, "after_commit", _forget)
