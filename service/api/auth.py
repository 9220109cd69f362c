"""Who is calling /v1, and may they: the guard every /v1 blueprint runs before its views.

Each view declares what it needs with ``documented(..., scope=...)``; the guard
authenticates the bearer credential (an API key, or a deprecated GENVAULT_API_TOKENS token)
and refuses a caller who holds that scope in no project. Views then ask
``service.access.permissions`` about the project of what they touch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app, g, request
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.access import audit_log, credentials, permissions
from service.access.audit_log import AuditAction, Origin
from service.access.principal import Principal
from service.access.scopes import Authenticated, Scope
from service.api.context import container
from service.api.openapi import operation_of
from service.db.models import Project
from service.errors import Forbidden, NotFound, Unauthorized


def authenticate(credential: str) -> Principal | None:
    c = container()
    tokens = tuple(t.get_secret_value() for t in c.settings.api_tokens)
    return credentials.authenticate(c.db, c.settings.secret, tokens, credential)


def bearer() -> str | None:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def guard() -> None:
    """``before_request`` of every /v1 blueprint."""
    view = current_app.view_functions.get(request.endpoint or "")
    op = operation_of(view) if view is not None else None
    if op is None or op.public:
        return  # unrouted (Flask answers 404/405) or public by declaration
    credential = bearer()
    principal = authenticate(credential) if credential else None
    if principal is None:
        raise Unauthorized("a valid, unexpired API key is required (Authorization: Bearer gvk_…)")
    g.principal = principal
    if op.scope is Authenticated.ANY:
        return
    if op.scope is None:
        # Fail closed: a route that forgot to declare its scope serves nobody (and a test
        # holds the number of such routes at zero).
        raise Forbidden("this route declares no scope")
    if not principal.holds_anywhere(op.scope):
        raise permissions.missing(op.scope)


def principal() -> Principal:
    found = g.get("principal")
    if not isinstance(found, Principal):
        raise Unauthorized()
    return found


def acting_project(scope: Scope, requested: str | None) -> str:
    caller = principal()
    project = permissions.acting_project(caller, scope, requested)
    # A project key's own project exists (a foreign key says so). One named by an
    # all-projects credential, or by a person's role map, may not: 404 as for a project the
    # caller cannot see, not a foreign-key error (500) when something is created in it.
    if (caller.kind != "key" or caller.all_projects) and not _project_exists(project):
        raise NotFound(f"no project {project}")
    return project


_PROJECT_BY_SLUG = select(Project.slug).where(Project.slug == bindparam("slug"))


def _project_exists(slug: str) -> bool:
    with container().db.read() as conn:
        return conn.execute(_PROJECT_BY_SLUG, {"slug": slug}).first() is not None


def require(scope: Scope, project: str, *, what: str) -> None:
    permissions.require(principal(), scope, project, what=what)


def origin() -> Origin:
    return Origin.of(request.remote_addr, request.headers.get("X-Request-Id"))


def audit(
    session: Session,
    action: AuditAction,
    *,
    project: str | None,
    target: str | None,
    changes: Mapping[str, Any] | None = None,
    outcome: str = "success",
) -> None:
    """The audit row of an action the current caller takes, in the action's transaction."""
    audit_log.record(
        session,
        action,
        actor=principal().actor,
        project=project,
        target=target,
        origin=origin(),
        outcome=outcome,
        changes=changes,
    )
