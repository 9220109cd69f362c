"""Accepting a job, and the `submit` task that hands it to its provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service import metrics
from service.db.models import Asset, Job
from service.db.session import Database
from service.db.types import utcnow
from service.errors import Conflict
from service.jobs import records, results
from service.jobs.states import JobStatus
from service.providers.base import Provider
from service.providers.endpoints import get_endpoint, validate_params
from service.security.tokens import webhook_token
from service.tasks.kinds import TaskKind
from service.tasks.queue import ClaimedTask, TaskQueue

# Rewrites a job's params before they go out (data: URIs become URLs the provider can fetch).
PrepareInputs = Callable[[Job], dict[str, Any]]
# At acceptance: archives inline inputs; returns the params (with summaries) and asset rows.
AcceptInline = Callable[[str, datetime, str, Mapping[str, Any]], tuple[dict[str, Any], list[Asset]]]


def create_job(
    db: Database,
    queue: TaskQueue,
    *,
    endpoint: str,
    params: Mapping[str, Any],
    metadata: Mapping[str, Any],
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
        existing = _by_idempotency_key(db, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
    job_id, created_at = records.new_job_id(), utcnow()
    inline_assets: list[Asset] = []
    if accept_inline is not None:
        # Before the row exists: the jobs table never holds an inline image's bulk.
        clean, inline_assets = accept_inline(job_id, created_at, endpoint, clean)
    try:
        with db.transaction() as session:
            job = Job(
                id=job_id,
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
        existing = _by_idempotency_key(db, idempotency_key, fingerprint)
        if existing is None:
            raise
        return existing, False
    metrics.JOBS_CREATED.labels(endpoint).inc()
    return job, True


def _by_idempotency_key(db: Database, key: str, fingerprint: str) -> Job | None:
    with db.transaction() as session:
        job = session.execute(select(Job).where(Job.idempotency_key == key)).scalar_one_or_none()
    if job is not None and job.request_fingerprint != fingerprint:
        raise Conflict("this Idempotency-Key was already used with a different request")
    return job


def webhook_url(public_url: str, secret: bytes, provider: str, track_id: str) -> str:
    token = webhook_token(secret, provider, track_id)
    return f"{public_url}/webhooks/{provider}/{quote(track_id)}?token={token}"


@dataclass
class Submitter:
    """The `submit` task: send the job to its provider and record the answer."""

    db: Database
    queue: TaskQueue
    providers: Mapping[str, Provider]
    public_url: str
    secret: bytes
    timing: results.PollTiming
    prepare_inputs: PrepareInputs

    def __call__(self, task: ClaimedTask) -> None:
        assert task.job_id is not None
        with self.db.transaction() as session:
            job = records.get_job(session, task.job_id, for_update=True)
            state = job.status
            if state is not JobStatus.QUEUED and not (
                state is JobStatus.SUBMITTED and job.provider_request_id is None
            ):
                return  # answered already (a webhook may even have beaten the answer)
            # Recorded before the call, so a crash mid-call shows as `submitted`, not `queued`.
            records.advance(job, JobStatus.SUBMITTED)
            job.submitted_at = job.submitted_at or utcnow()
            session.flush()  # expunge() would silently drop the unflushed changes
            session.expunge(job)

        spec = get_endpoint(job.endpoint)
        params = self.prepare_inputs(job)
        hook = (
            webhook_url(self.public_url, self.secret, spec.provider, job.track_id)
            if spec.uses_webhook
            else None
        )
        answer = self.providers[spec.provider].submit(
            job.endpoint, params, webhook_url=hook, track_id=job.track_id
        )

        with self.db.transaction() as session:
            job = records.get_job(session, job.id, for_update=True)
            callback_id = results.store(
                session, job, answer, source="submit", digest=results.body_digest(answer.raw)
            )
            if callback_id is not None:
                results.apply(session, self.queue, job, answer, callback_id, timing=self.timing)
