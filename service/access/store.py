"""Projects and API keys in the database: create, list, revoke, and authenticate."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, Select, bindparam, or_, select, update
from sqlalchemy.orm import Session

from service.access import keys
from service.access.audit_log import AuditAction, Origin, record
from service.access.principal import Principal
from service.access.scopes import Scope
from service.db.models import ApiKey, Project
from service.db.session import Database
from service.db.types import utcnow
from service.errors import Conflict, FieldError, InvalidRequest, NotFound

SLUG = re.compile(r"[a-z0-9-]{1,40}")
# last_used_at is a hint for people deciding what to revoke: a write at most this often keeps
# it useful without turning every authenticated request into a write.
LAST_USED_EVERY = timedelta(seconds=60)


def create_project(
    session: Session, slug: str, name: str, *, creator: Principal, origin: Origin
) -> Project:
    """The project and its ``project.create`` audit row (API and dashboard alike)."""
    if not SLUG.fullmatch(slug):
        raise InvalidRequest([FieldError("slug", "must match [a-z0-9-]{1,40}")])
    if session.get(Project, slug) is not None:
        raise Conflict(f"a project {slug} exists already")
    project = Project(slug=slug, name=name, created_by=creator.actor, created_at=utcnow())
    session.add(project)
    record(
        session,
        AuditAction.PROJECT_CREATE,
        actor=creator.actor,
        project=slug,
        target=slug,
        origin=origin,
        changes={"name": name},
    )
    return project


def get_project(session: Session, slug: str) -> Project:
    project = session.get(Project, slug)
    if project is None:
        raise NotFound(f"no project {slug}")
    return project


def select_projects(visible: frozenset[str] | None) -> Select[Project]:
    stmt = select(Project).order_by(Project.slug)
    if visible is not None:
        stmt = stmt.where(Project.slug.in_(sorted(visible)))
    return stmt


@dataclass(frozen=True)
class IssuedKey:
    row: ApiKey
    key: str  # the only time it exists outside the caller's hands


def create_key(
    session: Session,
    server_secret: bytes,
    *,
    name: str,
    project: str | None,
    scopes: frozenset[Scope],
    created_by: str,
    lifetime: timedelta,
) -> IssuedKey:
    new = keys.generate()
    now = utcnow()
    row = ApiKey(
        id=new.id,
        name=name,
        project=project,
        scopes=sorted(s.value for s in scopes),
        secret_hash=keys.hash_key(server_secret, new.key),
        created_by=created_by,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    return IssuedKey(row, new.key)


def get_key(session: Session, key_id: str) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no key {key_id}")
    return row


def revoke_key(session: Session, row: ApiKey) -> None:
    if row.revoked_at is None:
        row.revoked_at = utcnow()


def select_keys(project: str | None, *, every_project: bool) -> Select[ApiKey]:
    """A project's keys; with ``every_project``, all keys (all-projects ones included)."""
    stmt = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if not every_project:
        stmt = stmt.where(ApiKey.project == project)
    return stmt


# Built once: the key check runs on every API request, and building a statement costs more
# than running it on SQLite.
_KEY_BY_ID = select(ApiKey.__table__).where(ApiKey.__table__.c.id == bindparam("key_id"))


def find_key(db: Database, key_id: str) -> Row[Any] | None:
    """The key's row (its columns as attributes), read without taking any lock."""
    with db.read() as conn:
        return conn.execute(_KEY_BY_ID, {"key_id": key_id}).first()


def key_principal(row: ApiKey | Row[Any]) -> Principal:
    return Principal(
        kind="key",
        id=row.id,
        label=row.name,
        grants={row.project: frozenset(Scope(s) for s in row.scopes)},
    )


def authenticate_key(db: Database, server_secret: bytes, key: str) -> Principal | None:
    """The key's principal, or None when it is unknown, wrong, revoked or expired.

    One primary-key read in a read-only transaction; a write only when last_used_at is due.
    """
    key_id = keys.parse(key)
    if key_id is None:
        return None
    row = find_key(db, key_id)
    # Hash even when the id is unknown, so the time taken does not tell ids apart.
    stored = row.secret_hash if row is not None else "0" * 64
    if not keys.matches(server_secret, key, stored) or row is None:
        return None
    now = utcnow()
    if row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        with db.transaction() as session:
            # Conditional, so concurrent requests of one key write it once.
            session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == row.id,
                    or_(
                        ApiKey.last_used_at.is_(None),
                        ApiKey.last_used_at < now - LAST_USED_EVERY,
                    ),
                )
                .values(last_used_at=now)
            )
    return key_principal(row)


def legacy_token_index(tokens: tuple[str, ...], given: str) -> int | None:
    """Which GENVAULT_API_TOKENS entry ``given`` is (1-based), compared with every one."""
    found = None
    for number, candidate in enumerate(tokens, start=1):
        if hmac.compare_digest(candidate.encode(), given.encode()):
            found = number
    return found
