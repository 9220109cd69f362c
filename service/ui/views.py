"""The dashboard's pages: sign in, gallery, a job, operations."""

from __future__ import annotations

import json
import time
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from werkzeug.wrappers.response import Response as BaseResponse
from wtforms import ValidationError  # type: ignore[import-untyped]

from service.access import permissions
from service.access.audit_log import AuditAction, record
from service.access.principal import Principal
from service.access.scopes import Scope
from service.api.context import container
from service.archive.audit import audit_archived_job
from service.archive.tombstone import tombstone_key
from service.db.models import Job
from service.db.types import utcnow
from service.errors import Conflict, Forbidden, NotFound
from service.jobs import erasure, operator_retry
from service.jobs.records import get_job
from service.jobs.states import JobStatus
from service.providers.endpoints import ENDPOINTS
from service.security.redaction import redact
from service.security.tokens import file_signature
from service.ui import events as ui_events
from service.ui import queries, signins
from service.ui.manifest import read_manifest
from service.ui.session import current, sign_in_with_credential, sign_out

bp = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

OPEN_VIEWS = {"ui.login", "ui.static"}


@bp.before_request
def _guard() -> BaseResponse | None:
    if request.method == "POST":
        # Every state-changing form carries the session's CSRF token; no token, no change.
        try:
            validate_csrf(request.form.get("csrf_token"))
        except ValidationError as exc:
            raise CSRFError(str(exc)) from None
    if request.endpoint in OPEN_VIEWS or _visitor() is not None:
        return None
    return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))


def _visitor() -> Principal | None:
    c = container()
    return current(c.settings, c.db)


def _principal() -> Principal:
    found = _visitor()
    if found is None:  # the guard let only signed-in visitors through
        abort(401)
    return found


def _project() -> str:
    """The project these pages show: ?project=, else the visitor's own, else default."""
    try:
        return permissions.acting_project(
            _principal(), Scope.JOBS_READ, request.args.get("project") or None
        )
    except NotFound:
        abort(404)
    except Forbidden as exc:
        abort(Response(render_template("error.html", message=exc.message), 403))


@bp.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> tuple[str, int]:
    return render_template("error.html", message=f"Refused: {exc.description}"), 400


@bp.errorhandler(404)
def _not_found(_exc: Exception) -> tuple[str, int]:
    return render_template("error.html", message="No such job."), 404


@bp.after_request
def _headers(response: Response) -> Response:
    # Pages show archive data behind a sign-in: not framed, not cached by shared caches.
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if request.endpoint != "ui.static":
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response


@bp.app_template_global()
def csrf_token() -> str:
    return str(generate_csrf())


@bp.app_template_global()
def is_signed_in() -> bool:
    # Pages for visitors not signed in (login, a refused cross-site POST) must not start a
    # session: rendering a CSRF token would set a cookie over the user's real one.
    return _visitor() is not None


@bp.app_template_global()
def sees_every_project() -> bool:
    visitor = _visitor()
    return visitor is not None and visitor.all_projects


@bp.app_template_global()
def can(scope: str, project: str | None = None) -> bool:
    """The templates' permission check: the same one the API's guard and views use."""
    return permissions.can(_visitor(), Scope(scope), project)


@bp.app_template_filter("age")
def _age(moment: datetime | None) -> str:
    if moment is None:
        return ""
    seconds = max(0, int((utcnow() - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


@bp.app_template_filter("pretty")
def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _safe_next(target: str | None) -> str:
    # Only our own pages: an absolute or scheme-relative URL would be an open redirect.
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return url_for("ui.gallery")


def _stable_expiry(window: int) -> int:
    """An expiry on the next-but-one boundary of ``window``: one to two windows from now.

    Links signed this way stay the same across page views for a while, so browsers cache them.
    """
    now = int(time.time())
    return (now // window + 2) * window


def _link(key: str) -> str:
    """A link to an archived object straight from the store (S3 presigned, or /files/)."""
    window = container().settings.presign_expires_seconds
    return container().store.url(key, _stable_expiry(window) - int(time.time()))


def _thumb_link(key: str) -> str:
    """A thumbnail through this server's signed /files/ route, whatever the store.

    Thumbnails are a few KB, and an S3 presigned URL changes every second (it carries its
    signing time), which no browser cache would reuse; this link is stable and the route
    answers with ``Cache-Control: private, max-age=…, immutable``.
    """
    expires = _stable_expiry(container().settings.presign_expires_seconds)
    sig = file_signature(container().settings.secret, key, expires)
    return url_for("ops.files", key=key, expires=expires, sig=sig)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse | tuple[str, int]:
    c = container()
    if c.settings.oidc_enabled:
        # People sign in at the identity provider (service.ui.oidc); no token is taken here.
        posted = request.method == "POST"
        page = render_template(
            "login.html",
            oidc=True,
            next=request.args.get("next") or "",
            error="Tokens are not accepted here." if posted else None,
        )
        return (page, 403) if posted else page
    if request.method == "POST":
        who = sign_in_with_credential(c.settings, c.db, request.form.get("token", ""))
        if who is not None:
            signins.signed_in(c.db, who, "token form")
            return redirect(_safe_next(request.args.get("next")))
        signins.refused(c.db, signins.ANONYMOUS, "token form", "not a valid key or token")
        return render_template("login.html", error="That token is not valid."), 401
    return render_template("login.html", error=None)


@bp.post("/logout")
def logout() -> BaseResponse:
    sign_out()
    return redirect(url_for("ui.login"))


def _date_arg(name: str, errors: list[str]) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors.append(f"{name} must be a date like 2026-01-31")
        return None


@bp.get("/")
def gallery() -> str | tuple[str, int]:
    args = request.args
    errors: list[str] = []
    status: JobStatus | None = None
    if raw := args.get("status", ""):
        try:
            status = JobStatus(raw)
        except ValueError:
            errors.append(f"status must be one of {', '.join(JobStatus)}")
    filters = queries.Filters(
        project=_project(),
        status=status,
        endpoint=args.get("endpoint") or None,
        since=_date_arg("from", errors),
        until=_date_arg("to", errors),
        q=(args.get("q") or "").strip()[:200] or None,
    )
    c = container()
    with c.db.transaction() as session:
        page = queries.gallery_page(session, filters, args.get("cursor") or None)
    thumbs = {
        job_id: [_thumb_link(a.key) for a in assets if a.key]
        for job_id, assets in page.thumbs.items()
    }
    kept = {k: v for k, v in args.items() if k != "cursor" and v}
    next_url = (
        url_for("ui.gallery") + "?" + urlencode({**kept, "cursor": page.next_cursor})
        if page.next_cursor
        else None
    )
    html = render_template(
        "gallery.html",
        page=page,
        thumbs=thumbs,
        args=args,
        statuses=list(JobStatus),
        endpoints=sorted(ENDPOINTS),
        next_url=next_url,
        errors=errors,
    )
    return (html, 400) if errors else html


def _visible_job(job_id: str, scope: Scope) -> Job:
    """The job, or 404 when it is another project's; 403 when the scope is missing."""
    c = container()
    try:
        with c.db.transaction() as session:
            job = get_job(session, job_id)
        permissions.require(_principal(), scope, job.project, what=f"job {job_id}")
    except NotFound:
        abort(404)
    except Forbidden as exc:
        abort(Response(render_template("error.html", message=exc.message), 403))
    return job


def _job_page(job_id: str, audit: dict[str, Any] | None = None) -> str:
    c = container()
    _visible_job(job_id, Scope.JOBS_READ)
    try:
        with c.db.transaction() as session:
            detail = queries.job_detail(session, get_job(session, job_id))
            event_entries = ui_events.job_timeline(session, job_id)
    except NotFound:
        abort(404)
    job = detail.job
    manifest = read_manifest(c.store, c.archiver.signer.verifier, job)
    answers = [cb for cb in detail.callbacks if cb.status == "success"] or detail.callbacks
    answer = redact(answers[-1].body) if answers else None
    Entry = ui_events.TimelineEntry
    timeline = [Entry(job.created_at, "created")]
    if job.submitted_at:
        timeline.append(Entry(job.submitted_at, "submitted to the provider"))
    timeline += [
        Entry(cb.received_at, f"{cb.source} received: {cb.status}") for cb in detail.callbacks
    ]
    if job.archived_at:
        timeline.append(Entry(job.archived_at, "archived", "ok"))
    if job.status is JobStatus.FAILED:
        timeline.append(Entry(job.updated_at, f"failed: {job.error_code}", "bad"))
    if job.deleted_at:
        timeline.append(Entry(job.deleted_at, "erased", "bad"))
    # Stable: at equal times the job's own steps stay ahead of the events they caused.
    timeline = sorted([*timeline, *event_entries], key=lambda entry: entry.at)
    return render_template(
        "job.html",
        job=job,
        detail=detail,
        links={a.key: _link(a.key) for a in [*detail.outputs, *detail.inputs] if a.key},
        thumbs={a.index: a for a in detail.derived},
        manifest=manifest,
        answer=answer,
        # Stored bodies are already redacted; redacting again costs little and keeps it so.
        callback_bodies={cb.id: redact(cb.body) for cb in detail.callbacks},
        timeline=timeline,
        audit=audit,
        tombstone_key=tombstone_key(job.project, job.id),
    )


@bp.get("/jobs/<job_id>")
def job(job_id: str) -> str:
    return _job_page(job_id)


@bp.post("/jobs/<job_id>/retry")
def retry(job_id: str) -> BaseResponse:
    c = container()
    _visible_job(job_id, Scope.JOBS_RETRY)  # 404 or 403 before anything moves
    # The action the button said: if the job changed since, nothing else is done instead.
    expect = operator_retry.RetryAction.named(request.form.get("action"))
    actor, where = _principal().actor, signins.origin()
    try:
        plan = operator_retry.retry_job(
            c.db,
            c.queue,
            job_id,
            expect=expect,
            # The audit row commits with the retry, as the API's does.
            on_retry=lambda session, job, plan: record(
                session,
                AuditAction.JOB_RETRY,
                actor=actor,
                project=job.project,
                target=job.id,
                origin=where,
                changes={"action": plan.action.value},
            ),
        )
    except NotFound:
        abort(404)
    except Conflict as exc:
        flash(exc.message, "error")
    else:
        c.wake_workers()
        flash(f"Retrying: the job is {plan.target} again. {plan.done}", "ok")
    return redirect(url_for("ui.job", job_id=job_id))


@bp.post("/jobs/<job_id>/erase")
def erase(job_id: str) -> BaseResponse:
    c = container()
    _visible_job(job_id, Scope.JOBS_DELETE)  # 404 or 403 before anything is removed
    reason = (request.form.get("reason") or "").strip()
    if not reason or len(reason) > erasure.MAX_REASON:
        flash(f"Erasing needs a reason of 1 to {erasure.MAX_REASON} characters.", "error")
        return redirect(url_for("ui.job", job_id=job_id))
    actor, where = _principal().actor, signins.origin()
    try:
        done = erasure.erase_job(
            c.db, c.store, c.archiver.signer, job_id, actor=actor, reason=reason, origin=where
        )
    except NotFound:
        abort(404)
    except Conflict as exc:
        flash(exc.message, "error")
    else:
        flash(f"Erased: {len(done.removed)} objects removed; tombstone written.", "ok")
    return redirect(url_for("ui.job", job_id=job_id))


@bp.post("/jobs/<job_id>/audit")
def audit(job_id: str) -> str | tuple[str, int]:
    c = container()
    job = _visible_job(job_id, Scope.JOBS_READ)
    if job.status is not JobStatus.ARCHIVED:
        flash(f"Only an archived job can be audited; this one is {job.status}.", "error")
        return _job_page(job_id), 409
    report = audit_archived_job(c.db, c.store, job, c.archiver.signer.verifier)
    return _job_page(job_id, audit=report.as_json())


@bp.get("/ops")
def ops() -> str:
    if not _principal().all_projects:
        # Queues and endpoints of every project: for those who see every project.
        abort(
            Response(
                render_template(
                    "error.html", message="Operations span every project: ask an admin."
                ),
                403,
            )
        )
    now = utcnow()
    with container().db.transaction() as session:
        data = queries.operations(session, now)
        endpoints = ui_events.endpoint_health(session, now)
    return render_template("ops.html", ops=data, endpoints=endpoints, now=now)
