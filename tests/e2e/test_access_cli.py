"""The README's access runbook, as a user types it, against `genvault dev`.

The first key comes from `genvault keys create --bootstrap` (database and secret only, no
server); everything after it goes over the API with that key, as the README shows.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import requests

from service.access.keys import SCANNER_PATTERN
from tests.e2e.test_readme_commands import GENVAULT, _env, dev  # noqa: F401 - the fixture


def _genvault(*args: str, cwd: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = _env()
    if token is not None:
        env["GENVAULT_TOKEN"] = token
    return subprocess.run(
        [GENVAULT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_access_runbook_of_the_readme(dev: tuple[str, Path]) -> None:  # noqa: F811
    url, cwd = dev
    made = _genvault("keys", "create", "--bootstrap", "--name", "first-admin", "--json", cwd=cwd)
    assert made.returncode == 0, made.stderr
    admin = json.loads(made.stdout)
    assert admin["project"] is None and "projects:write" in admin["scopes"]
    assert re.fullmatch(SCANNER_PATTERN.strip(r"\b"), admin["key"])

    created = _genvault(
        "projects", "create", "render", "--name", "Render farm", cwd=cwd, token=admin["key"]
    )
    assert created.returncode == 0, created.stderr
    bot = _genvault(
        "keys", "create", "--name", "render-bot", "--project", "render", "--role", "operator",
        "--expires-in-days", "30", "--json", cwd=cwd, token=admin["key"],
    )  # fmt: skip
    assert bot.returncode == 0, bot.stderr
    operator = json.loads(bot.stdout)
    assert operator["project"] == "render"
    assert sorted(operator["scopes"]) == ["events:read", "jobs:read", "jobs:retry", "jobs:write"]

    listed = _genvault("keys", "list", "--project", "render", cwd=cwd, token=admin["key"])
    assert listed.returncode == 0 and operator["id"] in listed.stdout
    assert operator["key"] not in listed.stdout  # never shown again

    # The operator key works in its project and nowhere else, and cannot mint keys.
    auth = {"Authorization": f"Bearer {operator['key']}"}
    assert requests.get(f"{url}/v1/jobs", headers=auth, timeout=10).status_code == 200
    other = requests.get(f"{url}/v1/jobs?project=default", headers=auth, timeout=10)
    assert other.status_code == 404
    refused = _genvault(
        "keys", "create", "--name", "x", "--role", "viewer", cwd=cwd, token=operator["key"]
    )
    assert refused.returncode == 1 and "keys:write" in refused.stderr

    revoked = _genvault("keys", "revoke", operator["id"], cwd=cwd, token=admin["key"])
    assert revoked.returncode == 0, revoked.stderr
    assert requests.get(f"{url}/v1/jobs", headers=auth, timeout=10).status_code == 401

    log = _genvault("audit-log", "--json", cwd=cwd, token=admin["key"])
    assert log.returncode == 0, log.stderr
    actions = [e["action"] for e in json.loads(log.stdout)["entries"]]
    # Newest first: the bootstrap key, the project, the operator key, its revocation.
    assert actions == ["key.revoke", "key.create", "project.create", "key.create"]
    for secret in (admin["key"], operator["key"]):
        assert secret not in log.stdout
