"""What a provider's answer does to a job, whichever way it came (submit, webhook, poll)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Callback, Job
from service.db.session import upsert_insert
from service.jobs import records
from service.jobs.states import JobStatus
from service.providers.base import ProviderResult, ResultStatus
from service.security.redaction import redact
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue


@dataclasses.dataclass(frozen=True)
class PollTiming:
    grace_seconds: float
    max_attempts: int
    default_wait: float = 15.0


_STORED_FIELDS = tuple(f.name for f in dataclasses.fields(ProviderResult) if f.name != "raw")


def result_to_json(result: ProviderResult) -> dict[str, Any]:
    # Field by field, without raw: dataclasses.asdict deep-copied the whole body first, and
    # that was a third of a webhook request's CPU. The other fields are plain values.
    data = {name: getattr(result, name) for name in _STORED_FIELDS}
    data["status"] = result.status.value
    data["outputs"] = list(result.outputs)
    return data


def result_from_json(data: Mapping[str, Any]) -> ProviderResult:
    fields = {f.name for f in dataclasses.fields(ProviderResult)} - {"raw"}
    values = {k: v for k, v in data.items() if k in fields}
    values["status"] = ResultStatus(values["status"])
    values["outputs"] = tuple(values.get("outputs") or ())
    return ProviderResult(**values)


def body_digest(body: bytes | Mapping[str, Any]) -> str:
    if not isinstance(body, bytes):
        body = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(body).hexdigest()


def callback_values(result: ProviderResult, *, digest: str) -> dict[str, Any]:
    """A callback row's content: the body as received (secrets removed) and its meaning."""
    raw = result.raw
    return {
        "status": result.status.value,
        # redact copies: an exact dict need not be copied first.
        "body": redact(raw if type(raw) is dict else dict(raw)),
        "result": result_to_json(result),
        "body_sha256": digest,
    }


def store(
    session: Session, job: Job, result: ProviderResult, *, source: str, digest: str
) -> int | None:
    """Keep the answer; None when this exact answer was already kept (a duplicate)."""
    values = {"job_id": job.id, "source": source} | callback_values(result, digest=digest)
    stmt = (
        upsert_insert(session, Callback)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["job_id", "source", "body_sha256"])
        .returning(Callback.id)
    )
    return session.execute(stmt).scalar_one_or_none()


def apply(
    session: Session,
    queue: TaskQueue,
    job: Job,
    result: ProviderResult,
    callback_id: int,
    *,
    timing: PollTiming,
    schedule_poll: bool = True,
) -> None:
    """Move the job on as the answer says; never backwards, never twice."""
    if _repeats_a_failure(session, job, result, callback_id):
        return
    if result.request_id and not job.provider_request_id:
        job.provider_request_id = result.request_id
    if result.fetch_url and not job.fetch_url:
        # The first one stays (normally the submit answer, read over our own connection to
        # the provider); a later body, a forged webhook say, cannot redirect the polls. It
        # is only a fallback anyway: polls go to the base URL with the request id.
        job.fetch_url = result.fetch_url
    if result.nsfw is not None:
        job.nsfw = bool(job.nsfw) or result.nsfw

    if result.status is ResultStatus.SUCCESS:
        if records.advance(job, JobStatus.ARCHIVING):
            job.result_callback_id = callback_id
            queue.enqueue(session, TaskKind.ARCHIVE, job_id=job.id, dedupe_key=f"archive:{job.id}")
    elif result.status is ResultStatus.PROCESSING:
        records.advance(job, JobStatus.PROCESSING)
        if schedule_poll and job.status is JobStatus.PROCESSING:
            wait = result.eta_seconds if result.eta_seconds is not None else timing.default_wait
            # The webhook normally wins; the poll is the safety net if it never comes.
            queue.enqueue(
                session,
                TaskKind.POLL,
                job_id=job.id,
                delay=wait + timing.grace_seconds,
                dedupe_key=f"poll:{job.id}",
                revive=True,
                max_attempts=timing.max_attempts,
            )
    elif job.status in (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.PROCESSING):
        # A "failed" that arrives after a success (or after archiving) is ignored.
        records.fail(
            job,
            result.error_code or "provider_failed",
            result.error_message or "the provider reported that the generation failed",
        )


def _repeats_a_failure(
    session: Session, job: Job, result: ProviderResult, callback_id: int
) -> bool:
    """Whether this "failed" is about a provider request that had already failed.

    After an operator's retry resubmitted the job (same track_id, new provider id), a late
    answer about the failed generation must neither fail the new one nor lend it its id.
    Within one generation nothing is lost: the earlier "failed" (its callback is applied
    too, now or by its own task) settles the job itself.
    """
    if result.status is not ResultStatus.FAILED or not result.request_id or job.status.terminal:
        return False
    earlier = session.execute(
        select(Callback.id)
        .where(
            Callback.job_id == job.id,
            Callback.id < callback_id,
            Callback.status == ResultStatus.FAILED.value,
            Callback.result["request_id"].as_string() == result.request_id,
        )
        .limit(1)
    ).first()
    return earlier is not None


def latest_success(session: Session, job: Job) -> Callback | None:
    """The answer the archive works from: the one recorded, else the newest success."""
    chosen = records.callback(session, job.result_callback_id)
    if chosen is not None:
        return chosen
    return session.execute(
        select(Callback)
        .where(Callback.job_id == job.id, Callback.status == ResultStatus.SUCCESS.value)
        .order_by(Callback.id.desc())
        .limit(1)
    ).scalar_one_or_none()
