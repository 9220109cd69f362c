"""schemathesis over /openapi.json against a running stack (gunicorn and its database).

The webhook operation cannot be reached with generated values (the token is an HMAC of the
track id), so a job is created first and that operation's provider, track_id and token are
fixed to it in a schemathesis.toml: its bodies are still generated. Run through the CLI so
the suite and `make fuzz` run exactly the same thing and read the same JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


def _config(stack: Stack, directory: Path) -> Path:
    job = stack.submit("modelslab/text2img", {"model_id": "flux", "prompt": "fuzz"})
    track_id = job["track_id"]
    token = webhook_token(SECRET.encode(), "modelslab", track_id)
    path = directory / "schemathesis.toml"
    path.write_text(
        "[[operations]]\n"
        'include-operation-id = "webhooks_receive"\n'
        f'parameters = {{ provider = "modelslab", track_id = "{track_id}", token = "{token}" }}\n'
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
