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
from collections.abc import Iterator
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


def _run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**_tool_env(), **(env or {})},
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
    location: str, *, endpoint_url: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``ocfl-validate.py`` over one OCFL object root: a directory, ``file://…`` or ``s3://…``.

    The result's returncode is 0 only when the tool exited 0 and said the object is VALID;
    a storage root (which the tool passes whatever its objects hold) or a path it did not
    take for an object gets returncode 1, with the reason appended to stderr.
    """
    tool = require(OCFL_VALIDATE)
    target = ocfl_location(location, endpoint_url)
    done = _run([str(tool), target], env)
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


def validate_ocfl_objects(
    locations: list[str], *, endpoint_url: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One ``ocfl-validate.py`` run over many object roots: returncode 0 only when the tool
    said every one of them is a VALID object."""
    tool = require(OCFL_VALIDATE)
    targets = [ocfl_location(loc, endpoint_url) for loc in locations]
    done = subprocess.run(
        [str(tool), "-q", *targets],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**_tool_env(), **(env or {})},
    )
    valid = sum(
        " Object at " in line and line.endswith(" is VALID") for line in done.stdout.splitlines()
    )
    code = 0 if done.returncode == 0 and valid == len(targets) else 1
    return subprocess.CompletedProcess(done.args, code, done.stdout, done.stderr)


DAMAGES = "damages_archive"
DECLARATION = "0=ocfl_object_1.1"


def _file_objects(directory: Path) -> list[str]:
    return sorted(str(p.parent) for p in directory.rglob(DECLARATION) if ".meta" not in p.parts)


def _s3_objects(endpoint: str, bucket: str) -> list[str]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    roots = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/" + DECLARATION):
                roots.append(f"s3://{bucket}/{item['Key'].rsplit('/', 1)[0]}")
    return roots


# Object roots to validate, each with the S3 endpoint it is on (None: a local path).
Roots = list[tuple[str, str | None]]


def _enabled() -> bool:
    return os.access(OCFL_VALIDATE, os.X_OK) or bool(os.environ.get(REQUIRE))


@pytest.fixture(scope="module", autouse=True)
def every_archived_object_is_valid_ocfl() -> Iterator[Roots]:
    """ocfl-py validates every OCFL object the module's tests archived, once they are done.

    Each test's objects are found where its archives live (``archived_objects``, below); one
    run of the validator per module keeps its start-up cost (s3fs, aiobotocore) off each
    test. A failure names the objects, whose paths carry the test's name (its ``tmp_path``)
    or its bucket.
    """
    roots: Roots = []
    yield roots
    if not roots:
        return
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for endpoint in {e for _, e in roots}:
        done = validate_ocfl_objects(
            [r for r, e in roots if e == endpoint], endpoint_url=endpoint, env=creds
        )
        assert done.returncode == 0, (
            f"ocfl-py refused an object this module archived:\n{done.stdout}\n{done.stderr}"
        )


@pytest.fixture(autouse=True)
def archived_objects(
    request: pytest.FixtureRequest, every_archived_object_is_valid_ocfl: Roots
) -> Iterator[None]:
    """After each test, the OCFL objects it archived: under its ``tmp_path`` (file archives)
    and in its ``s3_bucket`` on moto's server, for the module's validation.

    A test that damages objects on purpose (to see them refused) says so with
    ``@pytest.mark.damages_archive``. Without the validators' venv this does nothing, unless
    GENVAULT_REQUIRE_VALIDATORS is set.
    """
    yield
    if request.node.get_closest_marker(DAMAGES) is not None or not _enabled():
        return
    found = getattr(request.node, "funcargs", {})
    endpoint = found.get("s3_endpoint") or found.get("s3_env")
    if isinstance(found.get("tmp_path"), Path):
        every_archived_object_is_valid_ocfl.extend(
            (root, None) for root in _file_objects(found["tmp_path"])
        )
    if isinstance(found.get("s3_bucket"), str) and endpoint:
        every_archived_object_is_valid_ocfl.extend(
            (root, endpoint) for root in _s3_objects(endpoint, found["s3_bucket"])
        )
