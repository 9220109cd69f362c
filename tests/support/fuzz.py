"""schemathesis over /openapi.json against a running stack (gunicorn and its database).

The webhook operation cannot be reached with generated values (the token is an HMAC of the
track id), so a job is created first and that operation's provider, track_id and token are
fixed to it in a schemathesis.toml: its bodies are still generated. Generated ids would only
ever meet 404 on /v1/endpoints/{id} and /v1/events/{id}, so two endpoints (one only for
DELETE) and two events with their deliveries are written first, and those operations' ids
are fixed to them the same way. Run through the CLI so the suite and `make fuzz` run exactly
the same thing and read the same JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from service.db.models import Job
from service.db.session import Database, make_engine
from service.events import endpoints, outbox
from service.events.types import EventType
from service.security.tokens import webhook_token
from tests.support.stack import SECRET, TOKEN, Stack

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@dataclass(frozen=True)
class FuzzResult:
    operations: int
    cases: int
    failures: int
    webhook_cases: int
    output: str

    def summary(self) -> str:
        return (
            f"{self.operations} operations, {self.cases} cases "
            f"({self.webhook_cases} on the webhook), {self.failures} failures"
        )


def _seed_events(stack: Stack, job_id: str) -> tuple[str, str, str]:
    """Two endpoints and two events (one about the job) with deliveries, written directly:
    with no worker nothing emits events, and a public endpoint URL would be looked up."""
    db = Database(make_engine(stack.env["GENVAULT_DATABASE_URL"]))
    try:
        with db.transaction() as session:
            kept = endpoints.create(
                session, "default", "https://receiver.example/kept", None, "fuzz"
            )
            deleted = endpoints.create(
                session, "default", "https://receiver.example/deleted", None, None
            )
        with db.transaction() as session:
            job = session.get(Job, job_id)
            assert job is not None
            event = outbox.emit(
                session,
                EventType.JOB_SUBMITTED,
                outbox.job_snapshot(session, job),
                project=job.project,
                job_id=job_id,
            )
        outbox.audit_failed(db, job_id, {"missing": ["fuzz"]})
        return kept.id, deleted.id, event.id
    finally:
        db.dispose()


def _config(stack: Stack, directory: Path) -> Path:
    job = stack.submit("modelslab/text2img", {"model_id": "flux", "prompt": "fuzz"})
    track_id = job["track_id"]
    token = webhook_token(SECRET.encode(), "modelslab", track_id)
    kept, deleted, event = _seed_events(stack, job["id"])
    path = directory / "schemathesis.toml"
    path.write_text(
        "[[operations]]\n"
        'include-operation-id = "webhooks_receive"\n'
        f'parameters = {{ provider = "modelslab", track_id = "{track_id}", token = "{token}" }}\n'
        "\n[[operations]]\n"
        'include-path-regex = "^/v1/endpoints/"\n'
        'exclude-method = "DELETE"\n'
        f'parameters = {{ endpoint_id = "{kept}" }}\n'
        "\n[[operations]]\n"
        'include-operation-id = "endpoints_remove"\n'
        f'parameters = {{ endpoint_id = "{deleted}" }}\n'
        "\n[[operations]]\n"
        'include-path-regex = "^/v1/events/"\n'
        f'parameters = {{ event_id = "{event}" }}\n'
    )
    return path


def run(stack: Stack, directory: Path, *, max_time: int, max_examples: int | None) -> FuzzResult:
    """One schemathesis run; ``max_time`` bounds it, ``max_examples`` caps each operation."""
    config = _config(stack, directory)
    report = directory / "schemathesis.ndjson"
    argv = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{stack.web_url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--max-time",
        str(max_time),
        "--workers",
        "2",
        "--request-timeout",
        "10",
        "--seed",
        "7",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
        "--output-sanitize",
        "true",
    ]
    if max_examples is not None:
        argv += ["--max-examples", str(max_examples)]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=max_time + 60, check=False, cwd=directory
    )
    output = done.stdout + done.stderr
    return _read_report(report, output)


def _read_report(report: Path, output: str) -> FuzzResult:
    operations: set[str] = set()
    cases = failures = webhook_cases = 0
    for line in report.read_text().splitlines():
        event = json.loads(line)
        (kind, body), *_ = event.items()
        if kind != "ScenarioFinished":
            continue
        recorder = body.get("recorder", {})
        label = recorder.get("label", "")
        if label.split(" ", 1)[0] in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
            operations.add(label)
        n = len(recorder.get("cases", {}))
        cases += n
        if "/webhooks/" in label:
            webhook_cases += n
        for checks in recorder.get("checks", {}).values():
            # Anything but a pass: "failure", and "error" when the check itself broke.
            failures += sum(1 for c in checks if c.get("status") not in {"success", "skip"})
    return FuzzResult(len(operations), cases, failures, webhook_cases, output)
