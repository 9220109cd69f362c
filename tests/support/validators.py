"""Validators genvault's developers did not write: ocfl-py for OCFL objects, bagit for bags.

They live in their own venv, .venv/tools/preservation (`make validators` builds it): ocfl-py
pins botocore narrowly, which the test setup's boto3 and moto must not be held to. Without
it a test that needs them skips, saying why, except under GENVAULT_REQUIRE_VALIDATORS, where
it fails.

``validate_ocfl_object`` takes ONE object root, never a storage root: ocfl-py validating a
whole storage root exits 0 even when an object in it is corrupt, so the wrapper counts a run
as passing only when the tool said that an object (at that path) is VALID.

On S3 the tool opens ``s3://BUCKET/PREFIX?endpoint_url=URL`` (ocfl.fsw hands the query's
parameters to s3fs's S3FileSystem); credentials come from the environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), as the ``s3_env`` fixture sets them for moto.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

TOOLS = Path(__file__).resolve().parents[2] / ".venv" / "tools" / "preservation" / "bin"
OCFL_VALIDATE = TOOLS / "ocfl-validate.py"
BAGIT = TOOLS / "bagit.py"
REQUIRE = "GENVAULT_REQUIRE_VALIDATORS"
TIMEOUT = 300


def require(tool: Path) -> Path:
    """The tool's path; skip (or fail, under GENVAULT_REQUIRE_VALIDATORS) when it is missing."""
    if os.access(tool, os.X_OK):
        return tool
    reason = f"{tool.name} not found in {tool.parent} (`make validators` builds that venv)"
    if os.environ.get(REQUIRE):
        pytest.fail(f"the validators are required here ({REQUIRE}): {reason}")
    pytest.skip(reason)


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    # The tool venv's own interpreter and packages only, whatever venv runs the tests.
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        env.pop(name, None)
    # s3fs (through botocore) reads AWS_DEFAULT_REGION; the tests' fixtures set AWS_REGION.
    if "AWS_REGION" in env:
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
    return env


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, check=False, env=_tool_env()
    )


def ocfl_location(location: str, endpoint_url: str | None = None) -> str:
    """``location`` as ocfl-py opens it: an ``s3://`` one gets ``?endpoint_url=`` (by default
    AWS_ENDPOINT_URL_S3, where moto's server is in the tests); a ``file://`` URI (as job JSON
    and ``store.uri`` give it, percent-encoded) becomes its path; a path stays as it is."""
    if location.startswith("file://"):
        return unquote(urlsplit(location).path)
    if not location.startswith("s3://"):
        return location
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
    if not endpoint or "?" in location:
        return location
    return f"{location.rstrip('/')}?endpoint_url={quote(endpoint, safe=':/')}"


def validate_ocfl_object(
    location: str, *, endpoint_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``ocfl-validate.py`` over one OCFL object root: a directory, ``file://…`` or ``s3://…``.

    The result's returncode is 0 only when the tool exited 0 and said the object is VALID;
    a storage root (which the tool passes whatever its objects hold) or a path it did not
    take for an object gets returncode 1, with the reason appended to stderr.
    """
    tool = require(OCFL_VALIDATE)
    target = ocfl_location(location, endpoint_url)
    done = _run([str(tool), target])
    said_valid = any(
        " Object at " in line and line.endswith(" is VALID") for line in done.stdout.splitlines()
    )
    if done.returncode == 0 and not said_valid:
        return subprocess.CompletedProcess(
            done.args,
            1,
            done.stdout,
            done.stderr + f"\nnot validated as one OCFL object: {location}\n",
        )
    return done


def validate_bag(directory: Path | str) -> subprocess.CompletedProcess[str]:
    """``bagit.py --validate DIR``: every payload file's checksums read again (never --fast)."""
    tool = require(BAGIT)
    return _run([str(tool), "--validate", str(directory)])
