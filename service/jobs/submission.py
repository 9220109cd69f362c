"""Accepting a job, and the `submit` task that hands it to its provider."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service import metrics
from service.db.availability import until_answered
from service.db.models import DEFAULT_PROJECT, Asset, Job
from service.db.session import Database
from service.db.types import utcnow
from service.errors import Conflict
from service.jobs import records, results, uncertain
from service.jobs.states import JobStatus
from service.jobs.uncertain import UncertainSubmissions, Verdict
from service.providers.base import Provider, ProviderResult, ProviderUnreachable
from service.providers.endpoints import get_endpoint, validate_params
from service.security.tokens import webhook_token
from service.tasks.kinds import TaskKind
from service.tasks.outcomes import Reschedule
from service.tasks.queue import ClaimedTask, TaskQueue

log = logging.getLogger(__name__)

# Rewrites a job's params before they go out (data: URIs become URLs the provider can fetch).
PrepareInputs = Callable[[Job], dict[str, Any]]
# At acceptance: archives inline inputs; returns the params (with summaries) and asset rows.
# Called with (job_id, created_at, endpoint, params, project).
AcceptInline = Callable[
    [str, datetime, str, Mapping[str, Any], str], tuple[dict[str, Any], list[Asset]]
]


def create_job(
    db: Database,
    queue: TaskQueue,
    *,
    endpoint: str,
    params: Mapping[str, Any],
    metadata: Mapping[str, Any],
    project: str = DEFAULT_PROJECT,
    idempotency_key: str | None = None,
    accept_inline: AcceptInline | None = None,
) -> tuple[Job, bool]:
    """Validate and insert a job with its `submit` task in one transaction.

    Returns the job and whether it was created (False: an earlier request with the same
    ``Idempotency-Key`` made it).
    """
    clean = validate_params(endpoint, params)
    fingerprint = results.body_digest({"endpoint": endpoint, "params": params, "meta": metadata})
    if idempotency_key:
        existing = _by_idempotency_key(db, idempotency_key, fingerprint, project)
        if existing is not None:
            return existing, False
    job_id, created_at = records.new_job_id(), utcnow()
    inline_assets: list[Asset] = []
    if accept_inline is not None:
        # Before the row exists: the jobs table never holds an inline image's bulk.
        clean, inline_assets = accept_inline(job_id, created_at, endpoint, clean, project)
    try:
        with db.transaction() as session:
            job = Job(
                id=job_id,
                project=project,
                track_id=records.new_track_id(),
                endpoint=endpoint,
                status=JobStatus.QUEUED.value,
                created_at=created_at,
                params=clean,
                meta=dict(metadata),
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint if idempotency_key else None,
            )
            session.add(job)
            session.flush()
            session.add_all(inline_assets)
            queue.enqueue(session, TaskKind.SUBMIT, job_id=job.id, dedupe_key=f"submit:{job.id}")
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the other one's job stands.
        if idempotency_key is None:
            raise
        existing = _by_idempotency_key(db, idempotency_key, fingerprint, project)
        if existing is None:
            raise
        return existing, False
    metrics.JOBS_CREATED.labels(endpoint).inc()
    return job, True


def _by_idempotency_key(db: Database, key: str, fingerprint: str, project: str) -> Job | None:
    # An Idempotency-Key is unique within its project: other projects' keys are not seen.
    with db.transaction() as session:
        job = session.execute(
            select(Job).where(Job.project == project, Job.idempotency_key == key)
        ).scalar_one_or_none()
    if job is not None and job.request_fingerprint != fingerprint:
        raise Conflict("this Idempotency-Key was already used with a different request")
    return job


def webhook_url(public_url: str, secret: bytes, provider: str, track_id: str) -> str:
    token = webhook_token(secret, provider, track_id)
    return f"{public_url}/webhooks/{provider}/{quote(track_id)}?token={token}"


@dataclass
class Submitter:
    """The `submit` task: send the job to its provider and record the answer.

    Never pays twice: the attempt is committed before the call, the answer is written even
    if the database is away for a while, and an attempt found without an answer is handled
    by ``uncertain`` instead of being sent again.
    """

    db: Database
    queue: TaskQueue
    providers: Mapping[str, Provider]
    public_url: str
    secret: bytes
    timing: results.PollTiming
    prepare_inputs: PrepareInputs
    uncertain: UncertainSubmissions
    # Set by the worker when it stops waiting for the database (end of shutdown grace).
    abandon_writes: threading.Event | None = None

    def __call__(self, task: ClaimedTask) -> Reschedule | None:
        assert task.job_id is not None
        with self.db.transaction() as session:
            job = records.get_job(session, task.job_id, for_update=True)
            if not self._may_submit(job):
                return None  # answered already (a webhook may even have beaten the answer)
            since = self.uncertain.pending_since(job)
            if since is not None:
                verdict, delay = self.uncertain.decide(since, utcnow())
                context = {"job_id": job.id, "track_id": job.track_id}
                if verdict is Verdict.WAIT:
                    log.info("an earlier submission has no answer: waiting", extra=context)
                    return Reschedule(delay)
                if verdict is Verdict.FAIL:
                    records.fail(job, uncertain.CODE, self.uncertain.message(job))
                    log.warning("submission uncertain: the job fails", extra=context)
                    return None
                log.warning("submission uncertain: resubmitting as configured", extra=context)
            # Committed before the call: a crash mid-call leaves this attempt on record.
            records.advance(job, JobStatus.SUBMITTED)
            job.submitted_at = job.submitted_at or utcnow()
            job.submit_attempted_at = utcnow()
            job.submit_attempts = (job.submit_attempts or 0) + 1
            session.flush()  # expunge() would silently drop the unflushed changes
            session.expunge(job)

        try:
            answer = self._call(job)
        except ProviderUnreachable:
            raise  # it may have arrived: the attempt stays on record
        except Exception:
            # The provider answered no (or was never reached): nothing to wait for.
            self._durably(lambda: self._forget_attempt(job.id), job)
            raise
        self._durably(lambda: self._record(job.id, answer), job)
        return None

    @staticmethod
    def _may_submit(job: Job) -> bool:
        return job.status is JobStatus.QUEUED or (
            job.status is JobStatus.SUBMITTED and job.provider_request_id is None
        )

    def _call(self, job: Job) -> ProviderResult:
        spec = get_endpoint(job.endpoint)
        params = self.prepare_inputs(job)
        hook = (
            webhook_url(self.public_url, self.secret, spec.provider, job.track_id)
            if spec.uses_webhook
            else None
        )
        return self.providers[spec.provider].submit(
            job.endpoint, params, webhook_url=hook, track_id=job.track_id
        )

    def _durably(self, write: Callable[[], None], job: Job) -> None:
        # The answer cost money and exists only in this process: wait for the database.
        until_answered(
            write,
            what="recording a provider's answer",
            stop=self.abandon_writes,
            extra={"job_id": job.id, "track_id": job.track_id},
        )

    def _record(self, job_id: str, answer: ProviderResult) -> None:
        with self.db.transaction() as session:
            job = records.get_job(session, job_id, for_update=True)
            job.submit_attempted_at = None
            # Per attempt: an operator's retry may get the very same answer (the same refusal)
            # and it must move the job again, not be taken for a redelivered duplicate.
            digest = results.body_digest({"attempt": job.submit_attempts, "answer": answer.raw})
            callback_id = results.store(session, job, answer, source="submit", digest=digest)
            if callback_id is not None:
                results.apply(session, self.queue, job, answer, callback_id, timing=self.timing)

    def _forget_attempt(self, job_id: str) -> None:
        with self.db.transaction() as session:
            records.get_job(session, job_id, for_update=True).submit_attempted_at = None
