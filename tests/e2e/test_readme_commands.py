"""The README's commands, as written, right after `make run` (issue 7 item 8).

`make run` is `genvault migrate` then `genvault dev` in a fresh directory with nothing set;
the commands are then typed in another shell of the same directory, also with nothing set.
GENVAULT_DEV=1 is in that environment on purpose: dev mode is not a setting, so it must
change nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.s3 import free_port

TOKEN = "genvault-dev-token"  # what the README prints
GENVAULT = str(Path(sys.executable).with_name("genvault"))


# `make run` serves on :8000, which the client commands default to; the test's own server
# listens on a free port, so it is the one thing they are told (GENVAULT_URL).
_SERVER: dict[str, str] = {}


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GENVAULT_", "MODELSLAB_", "AIMLAPI_", "AWS_"))
    }
    env["GENVAULT_DEV"] = "1"
    env.update(_SERVER)
    return env


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GENVAULT, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    assert _run("migrate", cwd=tmp_path).returncode == 0
    port, sandbox_port = free_port(), free_port()
    process = subprocess.Popen(
        [GENVAULT, "dev", "--port", str(port), "--sandbox-port", str(sandbox_port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _SERVER["GENVAULT_URL"] = url
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        else:
            pytest.fail("genvault dev did not start")
        yield url, tmp_path
    finally:
        _SERVER.clear()
        process.terminate()
        process.wait(timeout=30)


def test_every_readme_command_works_right_after_make_run(dev: tuple[str, Path]) -> None:
    url, cwd = dev
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {
        "endpoint": "modelslab/text2img",
        "params": {
            "model_id": "flux",
            "prompt": "a red fox in snow",
            "width": 768,
            "height": 512,
            "samples": 2,
        },
    }
    job_id = requests.post(f"{url}/v1/jobs", json=body, headers=auth, timeout=10).json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = requests.get(f"{url}/v1/jobs/{job_id}", headers=auth, timeout=10).json()
        if job["status"] in ("archived", "failed"):
            break
        time.sleep(0.2)
    assert job["status"] == "archived", job

    audit = _run("audit", cwd=cwd)
    assert audit.returncode == 0, audit.stderr
    assert json.loads(audit.stdout.splitlines()[0])["signature"] == "valid"
    assert _run("audit", "--quiet", cwd=cwd).returncode == 0
    assert _run("audit", "--job", job_id, cwd=cwd).returncode == 0
    bucket = _run("audit", "--bucket-only", cwd=cwd)
    assert bucket.returncode == 0, bucket.stderr

    printed = _run("signing-key", cwd=cwd)
    served = requests.get(f"{url}/v1/signing-key", headers=auth, timeout=10).json()
    assert printed.returncode == 0 and printed.stdout.strip() == served["public_key"]
    assert (
        _run("audit", "--bucket-only", "--public-key", served["public_key"], cwd=cwd).returncode
        == 0
    )

    listed = _run("jobs", cwd=cwd)
    assert listed.returncode == 0 and job_id in listed.stdout
    shown = _run("jobs", job_id, cwd=cwd)
    assert shown.returncode == 0 and "archived" in shown.stdout and job_id in shown.stdout
    shown = _run("jobs", job_id, "--json", cwd=cwd)
    assert shown.returncode == 0 and json.loads(shown.stdout)["status"] == "archived"
    submitted = _run(
        "submit",
        "modelslab/text2img",
        "--param",
        "model_id=flux",
        "--param",
        "prompt=a fox",
        "--wait",
        "--json",
        cwd=cwd,
    )
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["status"] == "archived"
    assert _run("migrate", cwd=cwd).returncode == 0
