"""/v1/jobs: submit, read, list, retry and erase jobs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from flask import Blueprint, Response, request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints
from sqlalchemy import Select, select
from sqlalchemy.orm import load_only

from service.access.audit_log import AuditAction
from service.access.scopes import Scope
from service.api import auth, bodies
from service.api.context import container
from service.api.input_guard import refuse_control_characters
from service.api.openapi import Param, Reply, documented
from service.api.paging import MAX_LIMIT, page_limit
from service.api.schemas import AuditReport, JobList, respond
from service.archive.audit import audit_archived_job
from service.db.models import Asset, Job
from service.db.sets import among
from service.errors import Conflict, FieldError, InvalidRequest, NotFound
from service.jobs import erasure, operator_retry
from service.jobs.records import get_job
from service.jobs.shape import JobOut, job_out
from service.jobs.states import JobStatus
from service.jobs.submission import create_job
from service.providers.endpoints import ENDPOINTS

bp = Blueprint("jobs", __name__, url_prefix="/v1")
bp.before_request(auth.guard)
bp.before_request(refuse_control_characters)


# What the job JSON shows, and nothing else: params may hold multi-MB data: URIs.
_JOB_COLUMNS = load_only(
    Job.id,
    Job.project,
    Job.track_id,
    Job.endpoint,
    Job.status,
    Job.created_at,
    Job.updated_at,
    Job.provider_request_id,
    Job.error_code,
    Job.error_message,
    Job.meta,
    Job.nsfw,
    Job.manifest_key,
    Job.deleted_at,
    raiseload=True,
)
# What a job's JSON shows of its output images, in _ListedAsset's order. Input rows are not
# shown, and their source_url may be a whole data: URI.
_ASSET_FIELDS = (
    Asset.role,
    Asset.index,
    Asset.key,
    Asset.sha256,
    Asset.size,
    Asset.content_type,
    Asset.width,
    Asset.height,
    Asset.content_credentials,
)


@dataclass(frozen=True, slots=True)
class _ListedAsset:
    """An output row as job_out reads it. Plain columns, not ORM objects: a list of 50 jobs
    shows 100 images, and each cost about 8 us more to load as an ORM object (in process, on
    bench/list_rows.py's jobs)."""

    role: str
    index: int
    key: str | None
    sha256: str
    size: int
    content_type: str
    width: int
    height: int
    content_credentials: dict[str, Any] | None


class JobRequest(BaseModel):
    """The body of POST /v1/jobs."""

    model_config = ConfigDict(extra="forbid")

    # The enum documents the choice (and lets schemathesis reach past it); an unknown name
    # is still refused by the endpoint table with its own message.
    endpoint: str = Field(
        min_length=1, max_length=100, json_schema_extra={"enum": list[JsonValue](sorted(ENDPOINTS))}
    )
    params: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)
    project: str | None = Field(
        default=None,
        max_length=40,
        description="an all-projects key names the project here; default: `default`",
    )


# C0 and C1 controls other than tab and newline: a reason is prose, kept in the tombstone.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _prose(text: str) -> str:
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters other than tab and newline")
    return text


class EraseRequest(BaseModel):
    """The body of DELETE /v1/jobs/{id}."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=erasure.MAX_REASON),
        AfterValidator(_prose),
    ] = Field(
        description="why the job is erased (a request reference, say); kept in the signed "
        "tombstone and the audit log, so no secrets"
    )


def _select_jobs() -> Select[Job]:
    return select(Job).options(_JOB_COLUMNS)


def _render(jobs: list[Job]) -> list[JobOut]:
    c = container()
    ids = [j.id for j in jobs]
    by_job: dict[str, list[_ListedAsset]] = {i: [] for i in ids}
    stmt = select(Asset.job_id, *_ASSET_FIELDS).where(
        among(Asset.job_id, ids, c.db.dialect), Asset.role == "output"
    )
    with c.db.transaction() as session:
        for job_id, *fields in session.execute(stmt):
            by_job[job_id].append(_ListedAsset(*fields))
    expires = c.settings.presign_expires_seconds
    return [job_out(j, by_job[j.id], c.store, expires) for j in jobs]


def _one(job_id: str, scope: Scope = Scope.JOBS_READ) -> JobOut:
    with container().db.transaction() as session:
        job = session.execute(_select_jobs().where(Job.id == job_id)).scalar_one_or_none()
    if job is None:
        raise NotFound(f"no job {job_id}")
    auth.require(scope, job.project, what=f"job {job_id}")
    return _render([job])[0]


def _project_arg() -> Param:
    return Param("project", "query", description="an all-projects key's project (default)")


_JOB_ID_ERRORS = (404, 422)


@bp.post("/jobs")
@documented(
    "Submit a generation job",
    {
        202: Reply("accepted: the new job", JobOut),
        200: Reply("the job an earlier request with this Idempotency-Key created", JobOut),
    },
    errors=(404, 409, 413, 422),
    body=JobRequest,
    scope=Scope.JOBS_WRITE,
    headers=[
        Param(
            "Idempotency-Key",
            "header",
            {"type": "string", "maxLength": 255},
            description="a retried request with the same key returns the first job (200)",
        )
    ],
)
def submit() -> tuple[Response, int]:
    body = bodies.parse(JobRequest)
    key = request.headers.get("Idempotency-Key") or None
    if key is not None and len(key) > 255:
        raise InvalidRequest([FieldError("Idempotency-Key", "must be at most 255 characters")])
    project = auth.acting_project(Scope.JOBS_WRITE, body.project)
    c = container()
    job, created = create_job(
        c.db,
        c.queue,
        project=project,
        endpoint=body.endpoint,
        params=body.params,
        metadata=body.metadata,
        idempotency_key=key,
        accept_inline=c.inline_inputs.accept,
    )
    if created:
        c.wake_workers()
    return respond(_render([job])[0], 202 if created else 200)


@bp.get("/jobs/<job_id>")
@documented("Show a job", {200: JobOut}, errors=_JOB_ID_ERRORS, scope=Scope.JOBS_READ)
def show(job_id: str) -> tuple[Response, int]:
    return respond(_one(job_id))


@bp.get("/jobs")
@documented(
    "List jobs, newest first",
    {200: JobList},
    errors=(404, 422),
    query=[
        Param("status", "query", {"enum": [s.value for s in JobStatus]}),
        Param("endpoint", "query"),
        Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        Param("cursor", "query", description="next_cursor of the previous page"),
        _project_arg(),
    ],
    scope=Scope.JOBS_READ,
)
def index() -> tuple[Response, int]:
    args = request.args
    errors: list[FieldError] = []
    status = args.get("status")
    if status is not None and status not in set(JobStatus):
        errors.append(FieldError("status", f"must be one of {', '.join(JobStatus)}"))
    limit = page_limit(args, errors)
    if errors:
        raise InvalidRequest(errors)
    project = auth.acting_project(Scope.JOBS_READ, args.get("project"))
    stmt = _select_jobs().where(Job.project == project).order_by(Job.id.desc()).limit(limit + 1)
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
    return respond(JobList(jobs=_render(jobs), next_cursor=jobs[-1].id if more else None))


@bp.post("/jobs/<job_id>/retry")
@documented(
    "Re-run a failed job's archive step, or its submission",
    {202: Reply("queued again", JobOut)},
    errors=(*_JOB_ID_ERRORS, 409),
    scope=Scope.JOBS_RETRY,
)
def retry(job_id: str) -> tuple[Response, int]:
    c = container()
    _one(job_id, Scope.JOBS_RETRY)  # 404 for another project's job, before anything moves
    operator_retry.retry_job(
        c.db,
        c.queue,
        job_id,
        on_retry=lambda session, job, plan: auth.audit(
            session,
            AuditAction.JOB_RETRY,
            project=job.project,
            target=job.id,
            changes={"action": plan.action.value},
        ),
    )
    c.wake_workers()
    # Shown under the scope that allowed the retry: jobs:retry alone must not do the retry
    # and then answer 403 for want of jobs:read.
    return respond(_one(job_id, Scope.JOBS_RETRY), 202)


@bp.delete("/jobs/<job_id>")
@documented(
    "Erase a job: remove its archived objects, leave a signed tombstone",
    {
        200: Reply(
            "erased (or erased before: nothing is done twice): the job, status `deleted`, "
            "no assets",
            JobOut,
        )
    },
    errors=(*_JOB_ID_ERRORS, 409, 413),
    body=EraseRequest,
    scope=Scope.JOBS_DELETE,
)
def remove(job_id: str) -> tuple[Response, int]:
    """409 for a job still in flight, or (code ``retained``, with ``retain_until``) when S3
    Object Lock keeps any of its objects: then nothing is removed."""
    c = container()
    _one(job_id, Scope.JOBS_DELETE)  # 404 for another project's job, before the body
    body = bodies.parse(EraseRequest)
    erasure.erase_job(
        c.db,
        c.store,
        c.archiver.signer,
        job_id,
        actor=auth.principal().actor,
        reason=body.reason,
        origin=auth.origin(),
    )
    # Shown under the scope that allowed it, as a retry is.
    return respond(_one(job_id, Scope.JOBS_DELETE))


@bp.route("/jobs/<job_id>/audit", methods=["GET", "POST"])
@documented(
    "Re-read an archived job's objects; compare them with its rows, manifest and signature",
    {200: AuditReport},
    errors=(*_JOB_ID_ERRORS, 409),
    scope=Scope.JOBS_READ,
)
def audit(job_id: str) -> tuple[Response, int]:
    """Re-read this job's objects; compare them with its rows, manifest and signature."""
    c = container()
    with c.db.transaction() as session:
        job = get_job(session, job_id)
    auth.require(Scope.JOBS_READ, job.project, what=f"job {job_id}")
    if job.status != JobStatus.ARCHIVED.value:
        raise Conflict(f"only an archived job can be audited; this one is {job.status}")
    report = audit_archived_job(c.db, c.store, job, c.archiver.signer.verifier)
    return respond(AuditReport.model_validate(report.as_json()))
