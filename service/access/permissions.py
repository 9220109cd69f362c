"""The one permission check. The API's guard, its views and the dashboard all call these.

Two answers for "no", on purpose: a resource in a project the caller cannot see is 404,
exactly like one that does not exist (ids must not leak); a caller who can see the project
but lacks the scope gets 403 naming the scope it lacks.
"""

from __future__ import annotations

from service.access.principal import Principal
from service.access.scopes import Scope
from service.db.models import DEFAULT_PROJECT
from service.errors import Forbidden, NotFound


def missing(scope: Scope) -> Forbidden:
    return Forbidden(f"this credential lacks the {scope} scope", scope=scope.value)


def can(principal: Principal | None, scope: Scope, project: str | None = None) -> bool:
    """Whether ``principal`` holds ``scope`` in ``project`` (anywhere, with no project)."""
    if principal is None:
        return False
    if project is None:
        return principal.holds_anywhere(scope)
    return scope in principal.scopes_in(project)


def require(principal: Principal, scope: Scope, project: str, *, what: str) -> None:
    """Allow, or raise 404 (project not visible) or 403 (scope missing) for ``what``."""
    if not principal.sees(project):
        raise NotFound(f"no {what}")
    if scope not in principal.scopes_in(project):
        raise missing(scope)


def acting_project(principal: Principal, scope: Scope, requested: str | None) -> str:
    """The project a create or a list acts in.

    A key bound to one project acts there; an all-projects key names the project (``project``
    in the body or the query), ``default`` when it does not.
    """
    if requested is None:
        own = principal.projects()
        requested = next(iter(own)) if own is not None and len(own) == 1 else DEFAULT_PROJECT
    require(principal, scope, requested, what=f"project {requested}")
    return requested


def everywhere(principal: Principal | None, scope: Scope) -> bool:
    """Whether ``principal`` holds ``scope`` on every project (through an all-projects grant).

    A person may hold a role on every project and a larger one on a few: holding a scope in
    some project is not holding it everywhere.
    """
    return principal is not None and scope in principal.grants.get(None, frozenset())


def projects_with(principal: Principal, scope: Scope) -> frozenset[str] | None:
    """The projects where ``principal`` holds ``scope``; None when it holds it on every one."""
    if everywhere(principal, scope):
        return None
    return frozenset(
        p for p in principal.grants if p is not None and scope in principal.scopes_in(p)
    )
