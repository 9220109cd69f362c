"""Polling a provider when its webhook is late or never comes, and the stuck-job reconciler."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from service.db.models import Job
from service.db.session import Database
from service.db.types import utcnow
from service.jobs import records, results
from service.jobs.orphans import revive_orphans
from service.jobs.states import WAITING_ON_PROVIDER, JobStatus
from service.providers.base import Provider, ResultStatus
from service.providers.endpoints import get_endpoint
from service.tasks.kinds import TaskKind
from service.tasks.outcomes import Reschedule
from service.tasks.queue import ClaimedTask, TaskQueue

log = logging.getLogger(__name__)

_WAITING = [s.value for s in WAITING_ON_PROVIDER]


def poll_backoff(
    attempt: int, eta: float | None, *, base: float = 5.0, cap: float = 300.0
) -> float:
    """Wait before the next poll: the provider's eta if it gave one, else doubling, capped."""
    doubling = base * 2.0 ** max(attempt - 1, 0)
    return min(cap, max(eta or 0.0, doubling))


@dataclass
class Poller:
    """The `poll` task: ask the provider how a job is doing and act on the answer."""

    db: Database
    queue: TaskQueue
    providers: Mapping[str, Provider]
    timing: results.PollTiming

    def __call__(self, task: ClaimedTask) -> Reschedule | None:
        assert task.job_id is not None
        with self.db.transaction() as session:
            job = records.get_job(session, task.job_id)
            if job.status not in _WAITING:
                return None  # a webhook or an earlier poll settled it
            endpoint, request_id, fetch_url = job.endpoint, job.provider_request_id, job.fetch_url
        if request_id is None and fetch_url is None:
            return None  # nothing to ask with; the reconciler times the job out
        provider = self.providers[get_endpoint(endpoint).provider]
        answer = provider.fetch(endpoint, request_id, fetch_url)

        with self.db.transaction() as session:
            job = records.get_job(session, task.job_id, for_update=True)
            # Per attempt once a job was resubmitted: a provider that sends no ids answers
            # "failed" with the same body for every generation, and the new generation's
            # must not be taken for a duplicate of the old one's.
            attempt = job.submit_attempts or 0
            digest = results.body_digest(
                answer.raw if attempt <= 1 else {"attempt": attempt, "answer": answer.raw}
            )
            callback_id = results.store(session, job, answer, source="poll", digest=digest)
            if callback_id is not None:
                results.apply(
                    session,
                    self.queue,
                    job,
                    answer,
                    callback_id,
                    timing=self.timing,
                    schedule_poll=False,
                )
            waiting = job.status in _WAITING
        if waiting and answer.status is ResultStatus.PROCESSING:
            return Reschedule(poll_backoff(task.attempts, answer.eta_seconds))
        return None


@dataclass
class Reconciler:
    """Periodic: poll jobs stuck waiting on a provider; fail those past the maximum age;
    give any non-final job with no live task its task back (jobs.orphans)."""

    db: Database
    queue: TaskQueue
    timing: results.PollTiming
    stuck_after: float
    max_age: float
    batch: int = 200
    orphan_after: float = 30.0

    def __call__(self) -> tuple[int, int]:
        now = utcnow()
        polled = timed_out = 0
        with self.db.transaction() as session:
            too_old = session.execute(
                select(Job)
                .where(
                    Job.status.in_([JobStatus.QUEUED.value, *_WAITING]),
                    Job.created_at < now - timedelta(seconds=self.max_age),
                )
                .limit(self.batch)
                .with_for_update(skip_locked=True)
            ).scalars()
            for job in too_old:
                if records.fail(
                    job, "timeout", f"no result from the provider within {self.max_age:.0f} s"
                ):
                    timed_out += 1
            stuck = session.execute(
                select(Job.id)
                .where(
                    Job.status.in_(_WAITING),
                    Job.updated_at < now - timedelta(seconds=self.stuck_after),
                    (Job.provider_request_id.is_not(None)) | (Job.fetch_url.is_not(None)),
                )
                .limit(self.batch)
            ).scalars()
            for job_id in stuck:
                self.queue.enqueue(
                    session,
                    TaskKind.POLL,
                    job_id=job_id,
                    dedupe_key=f"poll:{job_id}",
                    revive=True,
                    max_attempts=self.timing.max_attempts,
                )
                # enqueue() leaves a live poll alone; one queued for much later (a long eta
                # plus grace) would keep a stuck job waiting, so it is brought forward.
                self.queue.expedite(session, f"poll:{job_id}", within=self.stuck_after)
                polled += 1
        with self.db.transaction() as session:
            revived = revive_orphans(
                session, self.queue, self.timing, older_than=self.orphan_after, batch=self.batch
            )
        if polled or timed_out or revived:
            log.info(
                "reconciled", extra={"polled": polled, "timed_out": timed_out, "revived": revived}
            )
        return polled, timed_out
