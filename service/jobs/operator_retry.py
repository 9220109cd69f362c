"""An operator's retry of a failed job: re-archive it, or re-submit it if it never left."""

from __future__ import annotations

from sqlalchemy import select

from service.db.models import Callback
from service.db.session import Database
from service.db.types import utcnow
from service.errors import Conflict
from service.jobs import records
from service.jobs.states import JobStatus, retry_target
from service.providers.base import ResultStatus
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue


def retry_job(db: Database, queue: TaskQueue, job_id: str) -> JobStatus:
    with db.transaction() as session:
        job = records.get_job(session, job_id, for_update=True)
        has_result = (
            session.execute(
                select(Callback.id)
                .where(Callback.job_id == job.id, Callback.status == ResultStatus.SUCCESS.value)
                .limit(1)
            ).first()
            is not None
        )
        target = retry_target(job.status, reached_provider=has_result)
        if target is None:
            raise Conflict(f"only a failed job can be retried; this one is {job.status}")
        if target is JobStatus.QUEUED and job.provider_request_id is not None:
            # It reached the provider but we have no result: resubmitting would pay twice.
            raise Conflict(
                "the provider accepted this job but never delivered a result; submit a new job"
            )
        # The one sanctioned move out of `failed`, hence set directly rather than advanced.
        job.status = target
        job.error_code = None
        job.error_message = None
        job.updated_at = utcnow()
        kind = TaskKind.ARCHIVE if target is JobStatus.ARCHIVING else TaskKind.SUBMIT
        # Revive the same deduplicated task: already-archived objects are skipped, not rewritten.
        queue.enqueue(session, kind, job_id=job.id, dedupe_key=f"{kind}:{job.id}", revive=True)
    return target
