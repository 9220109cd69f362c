"""What the dashboard reads, written to stay fast on hundreds of thousands of jobs.

Job ids start with their creation time in milliseconds (records.new_job_id), so "newest
first" is ORDER BY id DESC, a page is "ids below the cursor", and a date range is an id
range: all read off the primary key or a (status|endpoint, id) index. Nothing here counts
every job.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session

from service.db.models import DEFAULT_PROJECT, Asset, Callback, Job, Task
from service.jobs import operator_retry
from service.jobs.states import JobStatus
from service.tasks.status import TaskStatus

PAGE_SIZE = 48


def id_at(moment: datetime) -> str:
    """The smallest job id created at ``moment`` (ids are a 12-hex-digit ms time first)."""
    return f"{int(moment.timestamp() * 1000):012x}"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class Filters:
    project: str = DEFAULT_PROJECT
    status: JobStatus | None = None
    endpoint: str | None = None
    since: date | None = None
    until: date | None = None
    q: str | None = None

    def where(self) -> list[Any]:
        clauses: list[Any] = [Job.project == self.project]
        if self.status is not None:
            clauses.append(Job.status == self.status)
        if self.endpoint:
            clauses.append(Job.endpoint == self.endpoint)
        if self.since is not None:
            clauses.append(Job.id >= id_at(_day_start(self.since)))
        if self.until is not None:  # inclusive: the whole of that day
            clauses.append(Job.id < id_at(_day_start(self.until) + timedelta(days=1)))
        if self.q:
            pattern = _like_pattern(self.q)
            clauses.append(
                or_(
                    Job.params["prompt"].as_string().ilike(pattern, escape="\\"),
                    cast(Job.meta, Text).ilike(pattern, escape="\\"),
                )
            )
        return clauses


@dataclass
class Page:
    jobs: list[Job]
    thumbs: dict[str, list[Asset]]
    next_cursor: str | None


def gallery_page(
    session: Session, filters: Filters, cursor: str | None, limit: int = PAGE_SIZE
) -> Page:
    stmt = select(Job).where(*filters.where()).order_by(Job.id.desc()).limit(limit + 1)
    if cursor:
        stmt = stmt.where(Job.id < cursor)
    jobs = list(session.execute(stmt).scalars())
    more = len(jobs) > limit
    jobs = jobs[:limit]
    thumbs: dict[str, list[Asset]] = defaultdict(list)
    if jobs:
        rows = session.execute(
            select(Asset)
            .where(Asset.job_id.in_([j.id for j in jobs]), Asset.role == "thumb")
            .order_by(Asset.index)
        ).scalars()
        for asset in rows:
            thumbs[asset.job_id].append(asset)
    return Page(jobs, thumbs, jobs[-1].id if more else None)


@dataclass
class JobDetail:
    job: Job
    outputs: list[Asset]
    inputs: list[Asset]
    derived: list[Asset]
    callbacks: list[Callback]
    # What the Retry button would do; None: no button (``retry_refusal`` says why).
    retry_plan: operator_retry.RetryPlan | None = None
    retry_refusal: str | None = None


def job_detail(session: Session, job: Job) -> JobDetail:
    assets = list(
        session.execute(
            select(Asset).where(Asset.job_id == job.id).order_by(Asset.role, Asset.index)
        ).scalars()
    )
    callbacks = list(
        session.execute(
            select(Callback).where(Callback.job_id == job.id).order_by(Callback.received_at)
        ).scalars()
    )
    retry = operator_retry.decide(job, operator_retry.answers(callbacks))
    return JobDetail(
        job,
        [a for a in assets if a.role == "output"],
        [a for a in assets if a.role == "input"],
        [a for a in assets if a.role == "thumb"],
        callbacks,
        retry_plan=retry if isinstance(retry, operator_retry.RetryPlan) else None,
        retry_refusal=retry.reason if isinstance(retry, operator_retry.RetryRefusal) else None,
    )


@dataclass
class Operations:
    queued: int
    running: int
    oldest_queued: Task | None
    by_status: dict[str, int]
    failures: list[Job] = field(default_factory=list)


def operations(session: Session, now: datetime, failures: int = 20) -> Operations:
    tasks: dict[Any, int] = dict(
        session.execute(
            select(Task.status, func.count())
            .where(Task.status.in_([TaskStatus.QUEUED, TaskStatus.RUNNING]))
            .group_by(Task.status)
        ).all()
    )
    oldest = session.execute(
        select(Task)
        .where(Task.status == TaskStatus.QUEUED)
        .order_by(Task.run_after)  # the claim index (status, run_after)
        .limit(1)
    ).scalar_one_or_none()
    # Jobs created in the last 24 h: an id range, so only that day's rows are read.
    by_status: dict[Any, int] = dict(
        session.execute(
            select(Job.status, func.count())
            .where(Job.id >= id_at(now - timedelta(hours=24)))
            .group_by(Job.status)
        ).all()
    )
    recent = list(
        session.execute(
            select(Job)
            .where(Job.status == JobStatus.FAILED)
            .order_by(Job.updated_at.desc())  # ix_jobs_status_updated
            .limit(failures)
        ).scalars()
    )
    return Operations(
        queued=int(tasks.get(TaskStatus.QUEUED, 0)),
        running=int(tasks.get(TaskStatus.RUNNING, 0)),
        oldest_queued=oldest,
        by_status={str(s): int(tasks_n) for s, tasks_n in by_status.items()},
        failures=recent,
    )
