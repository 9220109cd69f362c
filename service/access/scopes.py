"""The scopes a credential can hold, and the roles that bundle them (exact names: contract)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final


class Scope(enum.StrEnum):
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"  # submit
    JOBS_RETRY = "jobs:retry"
    JOBS_DELETE = "jobs:delete"
    EVENTS_READ = "events:read"
    ENDPOINTS_WRITE = "endpoints:write"
    ENDPOINTS_SECRETS = "endpoints:secrets"  # read or rotate a signing secret
    KEYS_WRITE = "keys:write"
    PROJECTS_WRITE = "projects:write"
    AUDIT_READ = "audit:read"


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


_VIEWER = frozenset({Scope.JOBS_READ, Scope.EVENTS_READ})
ROLE_SCOPES: Final[dict[Role, frozenset[Scope]]] = {
    Role.VIEWER: _VIEWER,
    Role.OPERATOR: _VIEWER | {Scope.JOBS_WRITE, Scope.JOBS_RETRY},
    Role.ADMIN: frozenset(Scope),
}
ALL_SCOPES: Final = ROLE_SCOPES[Role.ADMIN]


class Authenticated(enum.Enum):
    """A route any valid credential may call (it shows only what the caller may see)."""

    ANY = "any valid credential"


# What a route declares: one scope, or deliberately none beyond a valid credential.
Requirement = Scope | Authenticated


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """Scopes from their names; ValueError names the first unknown one."""
    out = set()
    for name in names:
        try:
            out.add(Scope(name))
        except ValueError:
            raise ValueError(f"unknown scope {name!r}") from None
    return frozenset(out)


def role_of(scopes: frozenset[Scope]) -> Role | None:
    """The role these scopes are exactly, if any (for display)."""
    for role, bundle in ROLE_SCOPES.items():
        if scopes == bundle:
            return role
    return None
