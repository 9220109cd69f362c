"""GENVAULT_OIDC_ROLE_MAP: which identity-provider groups get which role, where.

``group:role`` grants the role on every project; ``group:role@project`` on one project.
Entries are comma-separated; a group name may itself hold colons (the last one splits).
A person gets the union of what their groups map to, recomputed at every sign-in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from service.access.principal import ProjectGrant
from service.access.scopes import ROLE_SCOPES, Role, Scope


@dataclass(frozen=True)
class RoleRule:
    group: str
    role: Role
    project: str | None  # None: every project


def parse_role_map(text: str) -> tuple[RoleRule, ...]:
    """The rules; ValueError says which entry is wrong and why."""
    rules = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        group, sep, target = entry.rpartition(":")
        role_name, _, project = target.partition("@")
        if not sep or not group:
            raise ValueError(f"{entry!r} is not group:role or group:role@project")
        try:
            role = Role(role_name)
        except ValueError:
            roles = ", ".join(Role)
            raise ValueError(f"{entry!r}: the role must be one of {roles}") from None
        rules.append(RoleRule(group, role, project or None))
    return tuple(rules)


def grants_for(
    rules: Iterable[RoleRule], groups: Iterable[str]
) -> Mapping[ProjectGrant, frozenset[Scope]]:
    """What a person with ``groups`` holds; empty when no group maps to a role."""
    member = set(groups)
    grants: dict[ProjectGrant, frozenset[Scope]] = {}
    for rule in rules:
        if rule.group in member:
            grants[rule.project] = grants.get(rule.project, frozenset()) | ROLE_SCOPES[rule.role]
    return grants
