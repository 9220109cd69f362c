"""API keys (format, checksum, keyed hash) and the one permission check (roles, projects)."""

from __future__ import annotations

import random
import re

import pytest

from service.access import keys, permissions
from service.access.principal import Principal
from service.access.scopes import ALL_SCOPES, ROLE_SCOPES, Role, Scope, parse_scopes, role_of
from service.db.models import DEFAULT_PROJECT
from service.errors import Forbidden, NotFound

SCANNER = re.compile(keys.SCANNER_PATTERN)
SECRET = b"server-secret-0123456789abcdef0123456789"

# -- the key format ---------------------------------------------------------------------------


def test_every_issued_key_matches_the_scanner_pattern_and_parses() -> None:
    seen_ids, seen_keys = set(), set()
    for _ in range(1000):
        new = keys.generate()
        assert SCANNER.fullmatch(new.key), new.key
        assert len(new.key) == 4 + 16 + 1 + 43 + 6
        assert new.key.startswith(f"gvk_{new.id}_")
        assert keys.parse(new.key) == new.id
        # A scanner finds it inside the text it leaked into, and only the key itself.
        for leaked in (f'API_KEY="{new.key}"', f"Authorization: Bearer {new.key}\n", new.key):
            assert [m.group(0) for m in SCANNER.finditer(leaked)] == [new.key]
        seen_ids.add(new.id)
        seen_keys.add(new.key)
    assert len(seen_ids) == len(seen_keys) == 1000


def test_the_secret_part_carries_at_least_256_bits() -> None:
    import math

    assert keys.SECRET_LENGTH * math.log2(len(keys.ALPHABET)) >= 256
    assert len(set(keys.ALPHABET)) == 62


def test_random_strings_of_the_same_shape_with_a_bad_checksum_do_not_parse() -> None:
    rng = random.Random(16)
    alphabet = keys.ALPHABET

    def chars(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    refused = 0
    for _ in range(10_000):
        body = f"gvk_{chars(16)}_{chars(43)}"
        check = chars(6)
        while check == keys.checksum(body):  # pragma: no cover - one chance in 62**6
            check = chars(6)
        candidate = body + check
        assert SCANNER.fullmatch(candidate)  # the same shape a scanner looks for
        assert keys.parse(candidate) is None, candidate
        refused += 1
    assert refused == 10_000


def test_a_key_changed_in_any_one_place_does_not_parse() -> None:
    key = keys.generate().key
    for at in range(4, len(key)):
        if key[at] == "_":
            continue
        for replacement in ("0", "z"):
            if key[at] == replacement:
                continue
            typo = key[:at] + replacement + key[at + 1 :]
            assert keys.parse(typo) is None, (at, typo)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gvk_",
        "gvk_short_secret",
        "GVK_" + "a" * 16 + "_" + "b" * 49,
        "gvk-" + "a" * 16 + "_" + "b" * 49,
        "gvk_" + "a" * 16 + "_" + "b" * 48,
        "gvk_" + "a" * 16 + "_" + "b" * 50,
        "gvk_" + "a" * 15 + "_" + "b" * 50,
        "gvk_" + "a" * 16 + "_" + "b" * 48 + "!",
    ],
)
def test_other_shapes_do_not_parse(text: str) -> None:
    assert keys.parse(text) is None


def test_a_real_key_with_extra_text_around_it_does_not_parse() -> None:
    key = keys.generate().key
    for text in (f" {key}", f"{key} ", f"{key}\n", f"x{key}", f"{key}0"):
        assert keys.parse(text) is None


def test_the_hash_is_keyed_by_the_server_secret() -> None:
    key = keys.generate().key
    stored = keys.hash_key(SECRET, key)
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert key not in stored
    assert keys.hash_key(SECRET, key) == stored  # deterministic
    assert keys.hash_key(SECRET + b"x", key) != stored  # another server secret
    # Not a bare SHA-256 of the key: a stolen database alone cannot check a guess.
    import hashlib

    assert hashlib.sha256(key.encode()).hexdigest() != stored
    assert keys.matches(SECRET, key, stored)
    assert not keys.matches(SECRET + b"x", key, stored)
    assert not keys.matches(SECRET, keys.generate().key, stored)
    assert not keys.matches(SECRET, key, "0" * 64)


# -- scopes and roles -------------------------------------------------------------------------


def test_the_scope_names_are_exactly_the_contracts() -> None:
    assert {s.value for s in Scope} == {
        "jobs:read",
        "jobs:write",
        "jobs:retry",
        "jobs:delete",
        "events:read",
        "endpoints:write",
        "endpoints:secrets",
        "keys:write",
        "projects:write",
        "audit:read",
    }
    assert {r.value for r in Role} == {"viewer", "operator", "admin"}


def test_roles_bundle_exactly_the_issues_scopes() -> None:
    viewer = {Scope.JOBS_READ, Scope.EVENTS_READ}
    assert ROLE_SCOPES[Role.VIEWER] == viewer
    assert ROLE_SCOPES[Role.OPERATOR] == viewer | {Scope.JOBS_WRITE, Scope.JOBS_RETRY}
    assert ROLE_SCOPES[Role.ADMIN] == set(Scope) == ALL_SCOPES
    assert len(ROLE_SCOPES[Role.ADMIN]) == 10
    for role, bundle in ROLE_SCOPES.items():
        assert role_of(bundle) is role
    assert role_of(frozenset({Scope.JOBS_READ})) is None


def test_parse_scopes_names_the_unknown_one() -> None:
    assert parse_scopes(["jobs:read", "jobs:read"]) == {Scope.JOBS_READ}
    with pytest.raises(ValueError, match="'jobs:admin'"):
        parse_scopes(["jobs:read", "jobs:admin"])


# -- principals and the one permission check ---------------------------------------------------


def key(project: str | None, *scopes: Scope) -> Principal:
    return Principal("key", "K1", "ci", {project: frozenset(scopes)})


def test_how_the_audit_log_names_a_principal() -> None:
    assert key("alpha", Scope.JOBS_READ).actor == "key:K1 (ci)"
    assert Principal("token", "#1", "GENVAULT_API_TOKENS", {None: ALL_SCOPES}).actor == (
        "token:#1 (GENVAULT_API_TOKENS)"
    )
    assert Principal("user", "ada@example.com", "", {"alpha": ALL_SCOPES}).actor == (
        "user:ada@example.com"
    )


def test_a_one_project_key_sees_its_project_only() -> None:
    p = key("alpha", Scope.JOBS_READ)
    assert p.sees("alpha") and not p.sees("beta") and not p.sees(DEFAULT_PROJECT)
    assert not p.all_projects and not p.is_admin
    assert p.projects() == frozenset({"alpha"})
    assert p.scopes_in("alpha") == {Scope.JOBS_READ}
    assert p.scopes_in("beta") == frozenset()
    assert permissions.can(p, Scope.JOBS_READ)
    assert permissions.can(p, Scope.JOBS_READ, "alpha")
    assert not permissions.can(p, Scope.JOBS_READ, "beta")
    assert not permissions.can(p, Scope.JOBS_WRITE, "alpha")
    assert not permissions.can(None, Scope.JOBS_READ, "alpha")


def test_an_all_projects_key_sees_every_project_with_its_scopes() -> None:
    p = key(None, Scope.JOBS_READ)
    assert p.all_projects and not p.is_admin and p.projects() is None
    for project in ("alpha", "beta", DEFAULT_PROJECT):
        assert p.sees(project)
        assert p.scopes_in(project) == {Scope.JOBS_READ}
    assert key(None, *Scope).is_admin
    assert not key("alpha", *Scope).is_admin  # an admin of one project is not "admin"


def test_a_person_with_roles_in_several_projects() -> None:
    person = Principal(
        "user",
        "ada@example.com",
        "",
        {"alpha": ROLE_SCOPES[Role.OPERATOR], "beta": ROLE_SCOPES[Role.VIEWER]},
    )
    assert person.projects() == frozenset({"alpha", "beta"})
    assert permissions.can(person, Scope.JOBS_RETRY, "alpha")
    assert not permissions.can(person, Scope.JOBS_RETRY, "beta")
    assert permissions.can(person, Scope.JOBS_RETRY)  # somewhere
    permissions.require(person, Scope.JOBS_READ, "beta", what="job")
    with pytest.raises(Forbidden) as refused:
        permissions.require(person, Scope.JOBS_RETRY, "beta", what="job")
    assert refused.value.scope == "jobs:retry"
    with pytest.raises(NotFound):
        permissions.require(person, Scope.JOBS_READ, "gamma", what="job")


def test_require_answers_404_for_an_unseen_project_and_403_for_a_missing_scope() -> None:
    p = key("alpha", Scope.JOBS_READ)
    permissions.require(p, Scope.JOBS_READ, "alpha", what="job J")
    # Another project: not found, exactly like a job that does not exist, whatever the scope.
    for scope in Scope:
        with pytest.raises(NotFound, match="no job J"):
            permissions.require(p, scope, "beta", what="job J")
    # Its own project without the scope: 403 naming the scope.
    with pytest.raises(Forbidden) as refused:
        permissions.require(p, Scope.JOBS_RETRY, "alpha", what="job J")
    assert refused.value.scope == "jobs:retry"
    assert "jobs:retry" in refused.value.message
    assert refused.value.status == 403


def test_acting_project_of_a_one_project_key() -> None:
    p = key("alpha", Scope.JOBS_WRITE)
    assert permissions.acting_project(p, Scope.JOBS_WRITE, None) == "alpha"
    assert permissions.acting_project(p, Scope.JOBS_WRITE, "alpha") == "alpha"
    with pytest.raises(NotFound):
        permissions.acting_project(p, Scope.JOBS_WRITE, "beta")
    with pytest.raises(NotFound):
        permissions.acting_project(p, Scope.JOBS_WRITE, DEFAULT_PROJECT)
    with pytest.raises(Forbidden) as refused:
        permissions.acting_project(p, Scope.JOBS_READ, None)
    assert refused.value.scope == "jobs:read"


def test_acting_project_of_an_all_projects_key() -> None:
    p = key(None, Scope.JOBS_WRITE)
    assert permissions.acting_project(p, Scope.JOBS_WRITE, None) == DEFAULT_PROJECT
    assert permissions.acting_project(p, Scope.JOBS_WRITE, "beta") == "beta"
    with pytest.raises(Forbidden):
        permissions.acting_project(p, Scope.JOBS_READ, "beta")


def test_acting_project_of_a_person_in_several_projects_needs_a_name() -> None:
    person = Principal(
        "user", "ada@example.com", "", {"alpha": ALL_SCOPES, "beta": ROLE_SCOPES[Role.VIEWER]}
    )
    assert permissions.acting_project(person, Scope.JOBS_READ, "beta") == "beta"
    # Two projects and none named: `default`, which this person cannot see.
    with pytest.raises(NotFound):
        permissions.acting_project(person, Scope.JOBS_READ, None)
    with pytest.raises(Forbidden):
        permissions.acting_project(person, Scope.JOBS_WRITE, "beta")
