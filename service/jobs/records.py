"""Reading and changing jobs inside a transaction. No Flask, no boto3."""

from __future__ import annotations

import secrets
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import metrics
from service.db.models import Callback, Job
from service.db.types import utcnow
from service.errors import NotFound
from service.events import outbox
from service.jobs.states import JobStatus, can_advance


def new_job_id() -> str:
    # Time-ordered (ms timestamp first), so ids sort by creation and make stable cursors.
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def new_track_id() -> str:
    return secrets.token_hex(16)


def get_job(session: Session, job_id: str, *, for_update: bool = False) -> Job:
    stmt = select(Job).where(Job.id == job_id)
    if for_update:
        stmt = stmt.with_for_update()
    job = session.execute(stmt).scalar_one_or_none()
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def lock_job_unless_held(session: Session, job_id: str) -> Job | None:
    """The job, locked FOR UPDATE; None while another transaction holds its lock.

    For a transaction that already holds other locks: it never waits for this one, so it
    cannot deadlock with a transaction that locked the job first (SKIP LOCKED on PostgreSQL;
    SQLite's writers take turns on the whole file, so there the job is always returned).
    """
    stmt = select(Job).where(Job.id == job_id).with_for_update(skip_locked=True)
    job = session.execute(stmt).scalar_one_or_none()
    if job is None and session.execute(select(Job.id).where(Job.id == job_id)).first() is None:
        raise NotFound(f"no job {job_id}")
    return job


def get_job_by_track_id(session: Session, track_id: str, *, for_update: bool = False) -> Job:
    # FOR UPDATE serialises concurrent callbacks for one job on PostgreSQL.
    stmt = select(Job).where(Job.track_id == track_id)
    if for_update:
        stmt = stmt.with_for_update()
    job = session.execute(stmt).scalar_one_or_none()
    if job is None:
        raise NotFound("unknown track_id")
    return job


def advance(job: Job, new: JobStatus) -> bool:
    """Move the job forward; a move backwards (a late callback) is refused quietly."""
    if not can_advance(job.status, new):
        return False
    old = job.status
    job.status = new
    job.updated_at = utcnow()
    # The event rides in this transaction: written at its flush, gone with its rollback.
    outbox.job_moved(job, old, new)
    if new.terminal:
        metrics.JOBS_FINISHED.labels(job.endpoint, new.value).inc()
    if new is JobStatus.ARCHIVED:
        seconds = (job.updated_at - job.created_at).total_seconds()
        metrics.JOB_ARCHIVED_SECONDS.labels(job.endpoint).observe(max(0.0, seconds))
    return True


def fail(job: Job, code: str, message: str) -> bool:
    if not advance(job, JobStatus.FAILED):
        return False
    job.error_code = code
    job.error_message = message
    return True


def callback(session: Session, callback_id: int | None) -> Callback | None:
    return None if callback_id is None else session.get(Callback, callback_id)
