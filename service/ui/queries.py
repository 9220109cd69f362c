"""What the dashboard reads, written to stay fast on hundreds of thousands of jobs.

Job ids start with their creation time in milliseconds (records.new_job_id), so "newest
first" is ORDER BY id DESC, a page is "ids below the cursor", and a date range is an id
range: all read off the primary key or a (status|endpoint, id) index. Nothing here counts
every job.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import false, func, literal_column, select, text
from sqlalchemy.orm import Session

from service.db import pending_callbacks, search
from service.db.models import DEFAULT_PROJECT, Asset, Callback, Job, Task
from service.db.sets import among
from service.jobs import operator_retry
from service.jobs.states import JobStatus
from service.tasks.status import TaskStatus

PAGE_SIZE = 48


def id_at(moment: datetime) -> str:
    """The smallest job id created at ``moment`` (ids are a 12-hex-digit ms time first)."""
    return f"{int(moment.timestamp() * 1000):012x}"


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    project: str = DEFAULT_PROJECT
    status: JobStatus | None = None
    endpoint: str | None = None
    since: date | None = None
    until: date | None = None
    q: str | None = None

    def where(self, dialect: str) -> list[Any]:
        """The WHERE clauses on ``jobs``; ``dialect`` picks the search index to read."""
        clauses: list[Any] = [Job.project == self.project]
        if self.status is not None:
            clauses.append(Job.status == self.status)
        if self.endpoint:
            clauses.append(Job.endpoint == self.endpoint)
        if self.since is not None:
            clauses.append(Job.id >= id_at(_day_start(self.since)))
        if self.until is not None:  # inclusive: the whole of that day
            clauses.append(Job.id < id_at(_day_start(self.until) + timedelta(days=1)))
        if self.q:  # whole words, from the index (service/db/search.py)
            clauses.append(search.matches(dialect, self.q))
        return clauses


@dataclass
class Page:
    jobs: list[Job]
    thumbs: dict[str, list[Asset]]
    next_cursor: str | None


def gallery_page(
    session: Session, filters: Filters, cursor: str | None, limit: int = PAGE_SIZE
) -> Page:
    dialect = session.get_bind().dialect.name
    where = filters.where(dialect)
    if cursor:
        where.append(Job.id < cursor)
    if filters.q:
        plain = replace(filters, q=None).where(dialect) + where[len(where) - bool(cursor) :]
        # The plain filters again: the search answers ids, or (a common word) only a clause.
        where = [*plain, _search(session, dialect, filters.q, plain, limit + 1)]
    stmt = select(Job).where(*where).order_by(Job.id.desc()).limit(limit + 1)
    jobs = list(session.execute(stmt).scalars())
    more = len(jobs) > limit
    jobs = jobs[:limit]
    thumbs: dict[str, list[Asset]] = defaultdict(list)
    if jobs:
        rows = session.execute(
            select(Asset)
            .where(among(Asset.job_id, [j.id for j in jobs], dialect), Asset.role == "thumb")
            .order_by(Asset.index)
        ).scalars()
        for asset in rows:
            thumbs[asset.job_id].append(asset)
    return Page(jobs, thumbs, jobs[-1].id if more else None)


# A search's bounded steps (_search): how many of the newest jobs it reads in order first;
# how many matches it then asks the index for (fewer is every match); how many of the newest
# jobs it reads in order next; how many matches the index may return before the word counts
# as common.
SEARCH_FIRST = 100
SEARCH_PROBE = 100
SEARCH_SCAN = 1000
SEARCH_MATCHES = 10_000


def _search(session: Session, dialect: str, q: str, where: list[Any], want: int) -> Any:
    """The jobs of the page for ``q``, as a WHERE clause, whether the word is rare or common.

    Neither planner can tell a rare word from a common one (PostgreSQL's statistics keep only
    the frequent words; SQLite has none), so each search takes bounded steps, each priced by
    the page or a constant, not by the archive. Whatever the step, the answer is complete.
    """
    if dialect != "postgresql":
        return _search_sqlite(session, q)
    # 0. A common word fills the page from the newest SEARCH_FIRST jobs, in order (the scan
    # stops at the page: a word in every job reads ``want`` rows).
    ids = _newest_matching(session, q, where, SEARCH_FIRST, want)
    if len(ids) == want:
        return among(Job.id, ids, dialect)
    # 1. A rare word: up to SEARCH_PROBE matches off the GIN index, in any order
    # (MATERIALIZED keeps the planner from turning it into an ordered scan that reads every
    # job); fewer is every match, and the page is their newest. Not first: the index reads a
    # word's every entry before the LIMIT applies, as many as the archive has for a common
    # word, where step 0 reads a page.
    ids = _index_matches(session, q, where, SEARCH_PROBE)
    if len(ids) < SEARCH_PROBE:
        return among(Job.id, sorted(ids, reverse=True)[:want], dialect)
    # 2. The newest SEARCH_SCAN jobs, in order, each matched against the words.
    ids = _newest_matching(session, q, where, SEARCH_SCAN, want)
    if len(ids) == want:
        return among(Job.id, ids, dialect)
    # 3. Not a page among them: up to SEARCH_MATCHES matches off the index, then sorted here.
    ids = _index_matches(session, q, where, SEARCH_MATCHES)
    if len(ids) < SEARCH_MATCHES:  # every match: the page is its newest
        return among(Job.id, sorted(ids, reverse=True)[:want], dialect)
    # 4. A common word, just not among the newest jobs: in order, filtered, to the page.
    return search.matches(dialect, q)


def _newest_matching(session: Session, q: str, where: list[Any], scan: int, want: int) -> list[str]:
    """The newest ``want`` matches among the newest ``scan`` jobs (PostgreSQL)."""
    newest = (
        select(Job.id, literal_column(search.PG_VECTOR).label("words"))
        .where(*where)
        .order_by(Job.id.desc())
        .limit(scan)
        .subquery()
    )
    return list(
        session.execute(
            select(newest.c.id)
            .where(newest.c.words.bool_op("@@")(search.pg_tsquery(q)))
            .order_by(newest.c.id.desc())
            .limit(want)
        ).scalars()
    )


def _index_matches(session: Session, q: str, where: list[Any], most: int) -> list[str]:
    """Up to ``most`` matches off the GIN index, in no order (PostgreSQL)."""
    matched = (
        select(Job.id)
        .where(*where, search.matches("postgresql", q))
        .limit(most)
        .cte("matched")
        .prefix_with("MATERIALIZED")
    )
    return list(session.execute(select(matched.c.id)).scalars())


def _search_sqlite(session: Session, q: str) -> Any:
    """Up to SEARCH_SCAN matches off the FTS5 index; fewer is every match."""
    query = search.fts5_query(q)
    if query is None:
        return false()
    ids = list(
        session.execute(
            text("SELECT job_id FROM jobs_fts WHERE jobs_fts MATCH :q LIMIT :n"),
            {"q": query, "n": SEARCH_SCAN},
        ).scalars()
    )
    if len(ids) < SEARCH_SCAN:
        return Job.id.in_(ids)
    return search.matches("sqlite", q)  # a common word: the page fills from the newest jobs


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
    # Webhook callbacks stored and not yet applied by a worker (jobs/applying.py).
    callbacks_pending: int = 0
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
    waiting = pending_callbacks.pending(session.get_bind().dialect.name)
    pending = session.execute(select(func.count()).where(waiting)).scalar_one()
    return Operations(
        callbacks_pending=int(pending),
        queued=int(tasks.get(TaskStatus.QUEUED, 0)),
        running=int(tasks.get(TaskStatus.RUNNING, 0)),
        oldest_queued=oldest,
        by_status={str(s): int(tasks_n) for s, tasks_n in by_status.items()},
        failures=recent,
    )
