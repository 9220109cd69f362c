"""The dashboard's admin pages: API keys, projects, the audit log.

They hang on the dashboard's blueprint (its sign-in guard, CSRF check and headers), ask the
one permission check (service.access.permissions) and do what the /v1 API does through the
same use-cases (service.access.issuing, store, audit_log), each change with its audit row.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from flask import Response, abort, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers.response import Response as BaseResponse

from service.access import audit_log, issuing, permissions, store
from service.access.audit_log import AuditAction, AuditQuery
from service.access.principal import Principal
from service.access.scopes import ALL_SCOPES, Role, Scope
from service.access.store import IssuedKey
from service.api.access import KeyCreate, ProjectCreate
from service.api.context import container
from service.db.models import DEFAULT_PROJECT, AuditEntry
from service.db.types import utcnow
from service.errors import Conflict, Forbidden, InvalidRequest, NotFound
from service.ui.signins import origin
from service.ui.views import _principal, _visitor, bp

AUDIT_PAGE = 50
EVERY = "*"  # the form's value for a key on every project, as in the API
Page = str | tuple[str, int]


@bp.app_template_global()
def can_everywhere(scope: str) -> bool:
    """Whether the visitor holds ``scope`` on every project (the projects page needs it)."""
    return permissions.everywhere(_visitor(), Scope(scope))


def _refuse(status: int, message: str) -> NoReturn:
    abort(Response(render_template("error.html", message=message), status))


@contextmanager
def _as_pages() -> Iterator[None]:
    """The access rules' NotFound and Forbidden as the dashboard's 404 and 403 pages."""
    try:
        yield
    except NotFound as exc:
        _refuse(404, exc.message)
    except Forbidden as exc:
        _refuse(403, exc.message)


def _need(caller: Principal, scope: Scope, *, everywhere: bool = False) -> None:
    held = permissions.everywhere(caller, scope) if everywhere else permissions.can(caller, scope)
    if not held:
        where = " on every project" if everywhere else ""
        _refuse(403, f"{permissions.missing(scope).message}{where}.")


def _field_errors(exc: ValidationError | InvalidRequest) -> list[str]:
    if isinstance(exc, InvalidRequest):
        return [f"{e.field}: {e.message}" for e in exc.errors]
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]


# -- keys -----------------------------------------------------------------------------------


@bp.get("/keys", endpoint="keys")
def keys_page() -> Page:
    return _keys_page()


def _keys_page(form: dict[str, Any] | None = None, errors: list[str] | None = None) -> Page:
    """The keys of the project in view (every key, for an admin of every project)."""
    caller = _principal()
    _need(caller, Scope.KEYS_WRITE)
    asked = request.args.get("project") or None
    every = asked is None and permissions.everywhere(caller, Scope.KEYS_WRITE)
    writable = permissions.projects_with(caller, Scope.KEYS_WRITE)
    if asked is None and writable:
        asked = min(writable)  # the first project the visitor manages keys of
    with _as_pages():
        project = None if every else permissions.acting_project(caller, Scope.KEYS_WRITE, asked)
    c = container()
    with c.db.transaction() as session:
        rows = list(session.execute(store.select_keys(project, every_project=every)).scalars())
        choices = [p.slug for p in session.execute(store.select_projects(writable)).scalars()]
    html = render_template(
        "keys.html",
        keys=rows,
        project=project,
        every=every,
        # Every project last: the narrower key is the one to reach for.
        choices=choices + ([EVERY] if caller.is_admin else []),
        roles=list(Role),
        scopes=sorted(ALL_SCOPES),
        form=form
        or {
            "project": project or DEFAULT_PROJECT,
            "expires_in_days": c.settings.key_default_days,
        },
        max_days=c.settings.key_max_days,
        errors=errors or [],
        now=utcnow(),
    )
    return (html, 400) if errors else html


@bp.post("/keys", endpoint="create_key")
def create_key() -> Page:
    caller = _principal()
    _need(caller, Scope.KEYS_WRITE)
    form = request.form
    given = {
        "name": form.get("name", "").strip(),
        "project": form.get("project") or None,
        "role": form.get("role") or None,
        "scopes": form.getlist("scopes") or None,
        "expires_in_days": form.get("expires_in_days") or None,
    }
    with _as_pages():
        try:
            issued = _issue(caller, KeyCreate.model_validate(given))
        except (ValidationError, InvalidRequest) as exc:
            return _keys_page(form=given, errors=_field_errors(exc))
    # Shown on this answer only (no-store): the key exists nowhere else in clear.
    return render_template("key_created.html", key=issued.key, row=issued.row)


def _issue(caller: Principal, body: KeyCreate) -> IssuedKey:
    """What POST /v1/keys does, with its audit row."""
    c = container()
    # "*": every project, which issuing.issue allows only to an admin of every project.
    project = (
        None
        if body.project == EVERY
        else permissions.acting_project(caller, Scope.KEYS_WRITE, body.project)
    )
    wanted = issuing.KeyRequest(
        name=body.name,
        project=project,
        scopes=issuing.scopes_of(body.scopes, body.role),
        expires_in_days=body.expires_in_days,
    )
    with c.db.transaction() as session:  # commits as the with ends, return or not
        return issuing.issue_audited(
            session,
            c.settings.secret,
            caller,
            wanted,
            origin=origin(),
            default_days=c.settings.key_default_days,
            max_days=c.settings.key_max_days,
        )


@bp.post("/keys/<key_id>/revoke", endpoint="revoke_key")
def revoke_key(key_id: str) -> BaseResponse:
    caller = _principal()
    _need(caller, Scope.KEYS_WRITE)
    with _as_pages(), container().db.transaction() as session:
        name = issuing.revoke_audited(session, caller, key_id, origin()).name
    flash(f"Revoked the key {name} ({key_id}).", "ok")
    return redirect(url_for("ui.keys", project=request.args.get("project") or None))


# -- projects -------------------------------------------------------------------------------


@bp.get("/projects", endpoint="projects")
def projects_page() -> Page:
    return _projects_page()


def _projects_page(
    form: dict[str, str] | None = None, errors: list[str] | None = None, *, status: int = 400
) -> Page:
    # Creating a project reaches beyond any one project: for admins of every project.
    _need(_principal(), Scope.PROJECTS_WRITE, everywhere=True)
    with container().db.transaction() as session:
        rows = list(session.execute(store.select_projects(None)).scalars())
    html = render_template("projects.html", projects=rows, form=form or {}, errors=errors or [])
    return (html, status) if errors else html


@bp.post("/projects", endpoint="create_project")
def create_project() -> Page | BaseResponse:
    caller = _principal()
    _need(caller, Scope.PROJECTS_WRITE, everywhere=True)
    given = {"slug": request.form.get("slug", "").strip(), "name": request.form.get("name", "")}
    try:
        body = ProjectCreate.model_validate(given)
        with container().db.transaction() as session:
            store.create_project(session, body.slug, body.name, creator=caller, origin=origin())
    except (ValidationError, InvalidRequest) as exc:
        return _projects_page(given, _field_errors(exc))
    except Conflict as exc:
        return _projects_page(given, [exc.message], status=409)
    flash(f"Created the project {body.slug}.", "ok")
    return redirect(url_for("ui.projects"))


# -- audit log ------------------------------------------------------------------------------


def _cursor(raw: str) -> int | None:
    try:
        return int(base64.urlsafe_b64decode(raw.encode() + b"==").decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


@bp.get("/audit-log", endpoint="audit_log")
def audit_log_page() -> Page:
    caller = _principal()
    _need(caller, Scope.AUDIT_READ)
    args = request.args
    errors = []
    action = args.get("action") or None
    if action is not None and action not in set(AuditAction):
        errors.append(f"action must be one of {', '.join(AuditAction)}")
        action = None
    before = _cursor(args["cursor"]) if args.get("cursor") else None
    if args.get("cursor") and before is None:
        errors.append("cursor is not one this page gave out")
    actor = (args.get("actor") or "").strip()[:300] or None
    # Rows of the projects where the visitor may read the log (all of them, and the rows of
    # no project such as sign-ins, for a reader of every project).
    query = AuditQuery(
        permissions.projects_with(caller, Scope.AUDIT_READ), action, actor, None, before
    )
    with container().db.transaction() as session:
        rows: list[AuditEntry] = list(
            session.execute(audit_log.select_entries(query, AUDIT_PAGE + 1)).scalars()
        )
    more = len(rows) > AUDIT_PAGE
    rows = rows[:AUDIT_PAGE]
    next_url = None
    if more:
        cursor = base64.urlsafe_b64encode(str(rows[-1].id).encode()).decode().rstrip("=")
        kept: dict[str, Any] = {k: v for k, v in args.items() if k != "cursor" and v}
        next_url = url_for("ui.audit_log", **kept, cursor=cursor)
    html = render_template(
        "audit_log.html",
        entries=rows,
        actions=list(AuditAction),
        args=args,
        next_url=next_url,
        errors=errors,
    )
    return (html, 400) if errors else html
