"""Finding jobs that nothing will move on: not final, and no task queued or running for them.

Every state change writes its next task in the same transaction, so this should never
happen; when it does (a give-up that could not be recorded, a duplicate answer that moved
nothing, a bug) the job would sit there until its maximum age. The reconciler calls this
on every pass, whatever the job's state, and gives the job the task its state calls for.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from service.db.models import Job, Task
from service.db.types import utcnow
from service.jobs.results import PollTiming
from service.jobs.states import JobStatus
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue
from service.tasks.status import TaskStatus

log = logging.getLogger(__name__)

NOT_FINAL = [s.value for s in JobStatus if not s.terminal]


def next_task(job: Job) -> TaskKind | None:
    """The task that moves a job in this state forward; None when only time can."""
    if job.status is JobStatus.QUEUED:
        return TaskKind.SUBMIT
    if job.status is JobStatus.ARCHIVING:
        return TaskKind.ARCHIVE
    if job.provider_request_id is not None or job.fetch_url is not None:
        return TaskKind.POLL
    if job.status is JobStatus.SUBMITTED:
        # Sent, or maybe sent, with no answer: the submit task decides (see jobs.uncertain).
        return TaskKind.SUBMIT
    return None  # processing with nothing to poll by: the maximum age fails it


def revive_orphans(
    session: Session, queue: TaskQueue, timing: PollTiming, *, older_than: float, batch: int
) -> int:
    """Queue the missing task of every orphaned job; returns how many were revived."""
    now = utcnow()
    # Queued, or running under any lease: a lapsed lease is the queue's to take over.
    live_task = exists().where(
        Task.job_id == Job.id,
        # Only the tasks that move a job forward count (not, say, a notification).
        Task.kind.in_([TaskKind.SUBMIT.value, TaskKind.POLL.value, TaskKind.ARCHIVE.value]),
        Task.status.in_([TaskStatus.QUEUED.value, TaskStatus.RUNNING.value]),
    )
    orphans = session.execute(
        select(Job)
        .where(
            Job.status.in_(NOT_FINAL),
            Job.updated_at < now - timedelta(seconds=older_than),
            ~live_task,
        )
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).scalars()
    revived = 0
    for job in orphans:
        kind = next_task(job)
        if kind is None:
            continue
        queue.enqueue(
            session,
            kind,
            job_id=job.id,
            dedupe_key=f"{kind.value}:{job.id}",
            revive=True,
            max_attempts=timing.max_attempts if kind is TaskKind.POLL else None,
        )
        log.warning(
            "job had no live task; queued %s",
            kind.value,
            extra={"job_id": job.id, "track_id": job.track_id, "status": job.status.value},
        )
        revived += 1
    return revived
