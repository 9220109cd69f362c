"""The audit row of every dashboard sign-in, whichever way in (token form or OpenID Connect)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request

from service.access.audit_log import AuditAction, Origin, record
from service.access.principal import Principal
from service.db.session import Database

ANONYMOUS = "anonymous"  # the actor of a refused sign-in nobody vouched for


def origin() -> Origin:
    return Origin.of(request.remote_addr, request.headers.get("X-Request-Id"))


def _project(principal: Principal) -> str | None:
    # A sign-in that can act in one project only is that project's business (its audit
    # readers see it); one with a wider reach belongs to no single project.
    own = principal.projects()
    return next(iter(own)) if own is not None and len(own) == 1 else None


def signed_in(db: Database, principal: Principal, how: str, **changes: Any) -> None:
    with db.transaction() as session:
        record(
            session,
            AuditAction.SIGNIN_SUCCESS,
            actor=principal.actor,
            project=_project(principal),
            target=None,
            origin=origin(),
            changes={"via": how, **changes},
        )


def refused(
    db: Database, actor: str, how: str, reason: str, changes: Mapping[str, Any] | None = None
) -> None:
    """A refused sign-in; ``actor`` is who the identity provider said it was, or ANONYMOUS.

    Never the credential itself: what was pasted into the token form is not recorded.
    """
    with db.transaction() as session:
        record(
            session,
            AuditAction.SIGNIN_REFUSED,
            actor=actor,
            project=None,
            target=None,
            origin=origin(),
            outcome="refused",
            changes={"via": how, "reason": reason, **(changes or {})},
        )
