"""Issuing keys: what a key may hold is bounded by whoever creates it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session

from service.access import permissions, store
from service.access.audit_log import AuditAction, Origin, record
from service.access.principal import Principal
from service.access.scopes import ROLE_SCOPES, Role, Scope
from service.access.store import IssuedKey
from service.db.models import ApiKey
from service.errors import FieldError, Forbidden, InvalidRequest, NotFound


@dataclass(frozen=True)
class KeyRequest:
    name: str
    project: str | None  # None: every project (admins only)
    scopes: frozenset[Scope]
    expires_in_days: int | None


def scopes_of(scopes: list[Scope] | None, role: Role | None) -> frozenset[Scope]:
    """Either a list of scopes or a role, never both and never neither."""
    if (scopes is None) == (role is None):
        raise InvalidRequest([FieldError("scopes", "give either scopes or a role")])
    if role is not None:
        return ROLE_SCOPES[role]
    assert scopes is not None
    if not scopes:
        raise InvalidRequest([FieldError("scopes", "must name at least one scope")])
    return frozenset(scopes)


def issue(
    session: Session,
    server_secret: bytes,
    creator: Principal,
    request: KeyRequest,
    *,
    default_days: int,
    max_days: int,
) -> IssuedKey:
    days = request.expires_in_days if request.expires_in_days is not None else default_days
    if not 1 <= days <= max_days:
        raise InvalidRequest(
            [FieldError("expires_in_days", f"must be from 1 to {max_days} (GENVAULT_KEY_MAX_DAYS)")]
        )
    if request.project is None:
        if not creator.is_admin:
            raise Forbidden("only an admin of every project may create a key for every project")
        held = creator.grants[None]
    else:
        permissions.require(creator, Scope.KEYS_WRITE, request.project, what="project")
        store.get_project(session, request.project)
        held = creator.scopes_in(request.project)
    beyond = request.scopes - held
    if beyond:
        names = ", ".join(sorted(beyond))
        raise Forbidden(f"a key cannot hold more than its creator: you lack {names}")
    return store.create_key(
        session,
        server_secret,
        name=request.name,
        project=request.project,
        scopes=request.scopes,
        created_by=creator.actor,
        lifetime=timedelta(days=days),
    )


def issue_audited(
    session: Session,
    server_secret: bytes,
    creator: Principal,
    request: KeyRequest,
    *,
    origin: Origin,
    default_days: int,
    max_days: int,
) -> IssuedKey:
    """Issue the key and write its ``key.create`` audit row, in ``session`` (API, dashboard
    and ``keys create --bootstrap`` alike: one way to make a key)."""
    issued = issue(
        session,
        server_secret,
        creator,
        request,
        default_days=default_days,
        max_days=max_days,
    )
    record(
        session,
        AuditAction.KEY_CREATE,
        actor=creator.actor,
        project=request.project,
        target=issued.row.id,
        origin=origin,
        changes={
            "name": request.name,
            "scopes": sorted(request.scopes),
            "expires_at": issued.row.expires_at.isoformat(),
        },
    )
    return issued


def revocable(session: Session, caller: Principal, key_id: str) -> ApiKey:
    """The key ``caller`` may revoke, or NotFound / Forbidden (the API and the dashboard)."""
    row = session.get(ApiKey, key_id)
    # Another project's key is 404, as is an all-projects key to a one-project caller.
    visible = row is not None and (
        caller.all_projects if row.project is None else caller.sees(row.project)
    )
    if row is None or not visible:
        raise NotFound(f"no key {key_id}")
    if row.project is not None:
        permissions.require(caller, Scope.KEYS_WRITE, row.project, what=f"key {key_id}")
    elif not caller.is_admin:
        raise permissions.missing(Scope.KEYS_WRITE)
    return row


def revoke_audited(session: Session, caller: Principal, key_id: str, origin: Origin) -> ApiKey:
    """Revoke the key ``caller`` may revoke and write its ``key.revoke`` audit row."""
    row = revocable(session, caller, key_id)
    store.revoke_key(session, row)
    record(
        session,
        AuditAction.KEY_REVOKE,
        actor=caller.actor,
        project=row.project,
        target=key_id,
        origin=origin,
    )
    return row
