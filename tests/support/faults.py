"""What the fault tests share: a burst of jobs submitted like a careful client, the wait
for all of them, and the invariant every scenario ends with."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.support.archive_checks import (
    content_keys,
    job_keys,
    s3_client,
    validate_objects,
    verify_archive,
)
from tests.support.stack import BIN, ROOT, Stack

TEXT2IMG = "modelslab/text2img"
# Per scenario: enough to catch jobs in every state, small enough for 2 cores. The issue's
# full scenarios run on demand: GENVAULT_FAULT_JOBS=100 GENVAULT_FAULT_S3_SECONDS=30.
JOBS = int(os.environ.get("GENVAULT_FAULT_JOBS", "16"))
# The defaults the stack fixture tunes down for speed; fault figures are for the defaults.
DEFAULTS = {
    "GENVAULT_WORKER_POLL_INTERVAL": "1",
    "GENVAULT_POLL_GRACE_SECONDS": "10",
    "GENVAULT_RETRY_BASE_SECONDS": "2",
    "GENVAULT_RECONCILE_INTERVAL_SECONDS": "60",
}


def burst_params(i: int) -> dict[str, Any]:
    """Two small images per job, in a mix of the provider's ways of answering: at once, later
    by webhook, later by webhook after a delay."""
    markers = (
        "",
        "[sandbox:processing,eta=1]",
        "[sandbox:processing,eta=2]",
        "[sandbox:webhook-delay=1]",
    )
    return {
        "model_id": "flux",
        "prompt": f"outage {i} {markers[i % len(markers)]}".strip(),
        "samples": 2,
        "width": 96,
        "height": 64,
    }


@dataclass(eq=False)  # a Thread must stay hashable
class Burst(threading.Thread):
    """Submits ``count`` jobs one after another, retrying a 503 as its Retry-After says.

    An Idempotency-Key per job makes a retry safe even when an answer was lost. Anything but
    202 or 503 is recorded as an error (a 500 would be one).
    """

    stack: Stack
    count: int
    spacing: float = 0.1
    jobs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unavailable: int = 0

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        run_id = uuid.uuid4().hex[:8]
        for i in range(self.count):
            try:
                self._submit(i, f"outage-{run_id}-{i}")
            except Exception as exc:  # reported by the test, not lost in the thread
                self.errors.append(f"job {i}: {type(exc).__name__}: {exc}")
                return
            time.sleep(self.spacing)

    def _submit(self, i: int, key: str) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            r = requests.post(
                f"{self.stack.web_url}/v1/jobs",
                json={"endpoint": TEXT2IMG, "params": burst_params(i)},
                headers={**self.stack.auth, "Idempotency-Key": key},
                timeout=15,
            )
            if r.status_code == 202:
                self.jobs.append(r.json())
                return
            if r.status_code != 503 or "Retry-After" not in r.headers:
                self.errors.append(f"job {i}: HTTP {r.status_code} {r.text[:200]}")
                return
            self.unavailable += 1
            time.sleep(min(float(r.headers["Retry-After"]), 0.5))
        self.errors.append(f"job {i}: still unavailable after 90 s")

    def finish(self, timeout: float = 60) -> list[dict[str, Any]]:
        self.join(timeout)
        assert not self.is_alive(), "the burst did not finish"
        assert not self.errors, self.errors
        assert len(self.jobs) == self.count
        return self.jobs


def wait_all_final(stack: Stack, jobs: list[dict[str, Any]], timeout: float) -> float:
    """Wait until every job is archived or failed; the monotonic time when that was seen."""
    pending = {job["id"] for job in jobs}
    deadline = time.monotonic() + timeout
    while pending:
        for job_id in sorted(pending):
            if stack.job(job_id)["status"] in ("archived", "failed"):
                pending.discard(job_id)
        if not pending:
            break
        if time.monotonic() > deadline:
            states = {i: stack.job(i)["status"] for i in pending}
            raise AssertionError(f"not final after {timeout} s: {states}\n{stack.tail_logs()}")
        time.sleep(0.25)
    return time.monotonic()


def submissions(stack: Stack) -> dict[str, int]:
    """Generation requests the sandbox received, per track_id (what would have been paid)."""
    r = requests.get(f"{stack.sandbox_url}/sandbox/submissions", timeout=10)
    r.raise_for_status()
    return dict(r.json()["submissions"])


def assert_invariant(stack: Stack, jobs: list[dict[str, Any]]) -> None:
    """Every job archived with exactly one manifest and its outputs; nothing else in the
    bucket; the audit clean; one paid generation per job; no 500 from the web tier."""
    expected: set[str] = set()
    objects: list[str] = []
    for job in jobs:
        done = stack.job(job["id"])
        assert done["status"] == "archived", done
        # Also: the job's objects are exactly what it lists (ocfl-py once, for all, below).
        verify_archive(stack, done, validate=False)
        objects.append(done["object_uri"])
        keys = job_keys(stack, done["id"])
        assert sum(k.endswith("/manifest.json") for k in keys) == 1
        # Two images, their two thumbnails, one manifest and its signature (and the OCFL
        # object's declaration and inventories, which verify_archive checked).
        assert len(content_keys(stack, done["id"])) == 6, keys
        expected.update(keys)
        # Its project's OCFL storage root: declaration, layout, the layout's config.
        root = f"{stack.prefix}/projects/{done['project']}"
        expected.update(
            f"{root}/{name}"
            for name in (
                "0=ocfl_1.1",
                "ocfl_layout.json",
                "extensions/0003-hash-and-id-n-tuple-storage-layout/config.json",
            )
        )
    pages = s3_client(stack).get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
    stored = {o["Key"] for p in pages for o in p.get("Contents", [])}
    assert stored == expected, f"orphan objects: {sorted(stored - expected)}"
    validate_objects(stack, objects)
    audit = subprocess.run(
        [str(BIN / "genvault"), "audit", "--quiet"],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert audit.returncode == 0, audit.stdout.decode() + audit.stderr.decode()
    paid = submissions(stack)
    assert {job["track_id"]: paid.get(job["track_id"], 0) for job in jobs} == {
        job["track_id"]: 1 for job in jobs
    }
    assert '" 500 ' not in (stack.logs / "web.log").read_text(errors="replace")


def report(scenario: str, jobs: int, fault: float, recovered: float) -> None:
    """One line per scenario, for the README's table (run pytest with -s to see them)."""
    print(
        f"\nFAULT {scenario}: {jobs} jobs, fault {fault:.1f} s, "
        f"all archived {recovered:.1f} s after the fault ended"
    )


def mid_burst(stack: Stack, count: int = JOBS) -> Burst:
    """Start a burst and return once about half of it is in."""
    burst = Burst(stack, count)
    burst.start()
    deadline = time.monotonic() + 30
    while len(burst.jobs) < count // 2 and not burst.errors:
        assert time.monotonic() < deadline, stack.tail_logs()
        time.sleep(0.05)
    return burst
