"""/v1/jobs: submit, read, list and retry jobs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from service.api.auth import require_token
from service.api.context import container
from service.api.views import job_json
from service.archive.audit import audit_archived_job
from service.db.models import Asset, Job
from service.errors import Conflict, FieldError, InvalidRequest
from service.jobs import operator_retry
from service.jobs.records import get_job
from service.jobs.states import JobStatus
from service.jobs.submission import create_job

bp = Blueprint("jobs", __name__, url_prefix="/v1")
bp.before_request(require_token)

MAX_LIMIT = 200


class JobRequest(BaseModel):
    """The body of POST /v1/jobs."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=1, max_length=100)
    params: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()
    ]


def _render(jobs: list[Job]) -> list[dict[str, Any]]:
    c = container()
    ids = [j.id for j in jobs]
    by_job: dict[str, list[Asset]] = {i: [] for i in ids}
    with c.db.transaction() as session:
        for asset in session.execute(select(Asset).where(Asset.job_id.in_(ids))).scalars():
            by_job[asset.job_id].append(asset)
    expires = c.settings.presign_expires_seconds
    return [job_json(j, by_job[j.id], c.store, expires) for j in jobs]


def _one(job_id: str) -> dict[str, Any]:
    with container().db.transaction() as session:
        job = get_job(session, job_id)
    return _render([job])[0]


@bp.post("/jobs")
def submit() -> tuple[Response, int]:
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise InvalidRequest([FieldError("body", "must be a JSON object")])
    try:
        body = JobRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequest(_field_errors(exc)) from None
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 255:
        raise InvalidRequest([FieldError("Idempotency-Key", "must be at most 255 characters")])
    c = container()
    job, created = create_job(
        c.db,
        c.queue,
        endpoint=body.endpoint,
        params=body.params,
        metadata=body.metadata,
        idempotency_key=key,
        accept_inline=c.inline_inputs.accept,
    )
    if created:
        c.wake_workers()
    return jsonify(_render([job])[0]), 202 if created else 200


@bp.get("/jobs/<job_id>")
def show(job_id: str) -> Response:
    return jsonify(_one(job_id))


@bp.get("/jobs")
def index() -> Response:
    args = request.args
    errors: list[FieldError] = []
    status = args.get("status")
    if status is not None and status not in set(JobStatus):
        errors.append(FieldError("status", f"must be one of {', '.join(JobStatus)}"))
    try:
        limit = int(args.get("limit", "50"))
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError
    except ValueError:
        errors.append(FieldError("limit", f"must be an integer from 1 to {MAX_LIMIT}"))
        limit = 0
    if errors:
        raise InvalidRequest(errors)
    stmt = select(Job).order_by(Job.id.desc()).limit(limit + 1)
    if status:
        stmt = stmt.where(Job.status == status)
    if endpoint := args.get("endpoint"):
        stmt = stmt.where(Job.endpoint == endpoint)
    if cursor := args.get("cursor"):
        # Ids are time-ordered, so "older than the last one seen" pages stably.
        stmt = stmt.where(Job.id < cursor)
    with container().db.transaction() as session:
        jobs = list(session.execute(stmt).scalars())
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return jsonify({"jobs": _render(jobs), "next_cursor": jobs[-1].id if more else None})


@bp.post("/jobs/<job_id>/retry")
def retry(job_id: str) -> tuple[Response, int]:
    c = container()
    operator_retry.retry_job(c.db, c.queue, job_id)
    c.wake_workers()
    return jsonify(_one(job_id)), 202


@bp.route("/jobs/<job_id>/audit", methods=["GET", "POST"])
def audit(job_id: str) -> Response:
    """Re-read this job's objects; compare with its asset rows, manifest and signature."""
    c = container()
    with c.db.transaction() as session:
        job = get_job(session, job_id)
    if job.status != JobStatus.ARCHIVED.value:
        raise Conflict(f"only an archived job can be audited; this one is {job.status}")
    report = audit_archived_job(c.db, c.store, job, c.archiver.signer.verifier)
    return jsonify(report.as_json())
