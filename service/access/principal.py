"""Who is asking: an API key, a legacy GENVAULT_API_TOKENS token, or a signed-in person."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from service.access.scopes import ALL_SCOPES, Scope

# A grant's project: a slug, or None for every project.
ProjectGrant = str | None


@dataclass(frozen=True)
class Principal:
    kind: Literal["key", "token", "user", "cli"]
    id: str
    label: str
    # What it holds where: None is every project. A key has one entry; a person may have
    # several (one role per project from GENVAULT_OIDC_ROLE_MAP).
    grants: Mapping[ProjectGrant, frozenset[Scope]]

    @property
    def actor(self) -> str:
        """How the audit log names it: ``key:ID (name)``, ``user:email``, ``token:#2``."""
        return f"{self.kind}:{self.id}" + (f" ({self.label})" if self.label else "")

    @property
    def all_projects(self) -> bool:
        return None in self.grants

    @property
    def is_admin(self) -> bool:
        """Holds every scope on every project."""
        return self.grants.get(None, frozenset()) >= ALL_SCOPES

    def scopes_in(self, project: str) -> frozenset[Scope]:
        return self.grants.get(None, frozenset()) | self.grants.get(project, frozenset())

    def holds_anywhere(self, scope: Scope) -> bool:
        return any(scope in held for held in self.grants.values())

    def sees(self, project: str) -> bool:
        """Whether the project exists for this principal at all (else: 404, not 403)."""
        return self.all_projects or project in self.grants

    def projects(self) -> frozenset[str] | None:
        """The projects it has a grant in; None for every project."""
        if self.all_projects:
            return None
        return frozenset(p for p in self.grants if p is not None)
