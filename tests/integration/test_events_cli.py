"""`genvault endpoints` and `genvault events` against the API served on a loopback socket."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from service.app import create_app
from service.cli import main
from service.db.migrate import upgrade
from service.db.models import EventEndpoint
from service.jobs import records
from service.jobs.states import JobStatus
from service.wiring import Container, build
from tests.integration.test_events import EVENT_SETTINGS, drain, move, new_job
from tests.support.app import TOKEN, make_settings
from tests.support.db import sqlite_url
from tests.support.receivers import start_receiver
from tests.support.s3 import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Container]:
    c = build(make_settings(sqlite_url(tmp_path), tmp_path, **EVENT_SETTINGS))
    upgrade(c.db.engine)
    server = make_server("127.0.0.1", 0, create_app(container=c), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GENVAULT_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("GENVAULT_TOKEN", TOKEN)
    try:
        yield c
    finally:
        server.shutdown()
        server.server_close()
        c.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_endpoints_and_events_commands(
    served: Container, capsys: pytest.CaptureFixture[str]
) -> None:
    rx = start_receiver()
    code, out, _ = run(capsys, "endpoints", "--json", "create", rx.url, "--description", "crm")
    assert code == 0
    created = json.loads(out)
    rx.secret = created["secret"]
    code, out, _ = run(capsys, "endpoints")
    assert code == 0
    assert created["id"] in out and "crm" in out and "whsec_" not in out

    job_id = new_job(served)
    move(served, job_id, JobStatus.FAILED)
    drain(served)
    rx.wait_for(1)
    code, out, _ = run(capsys, "events", "--json", "--job", job_id)
    [event] = json.loads(out)["events"]
    assert event["type"] == "job.failed"
    code, out, _ = run(capsys, "events", event["id"], "--deliveries")
    assert code == 0
    assert f"{created['id']}  succeeded 1 attempts" in out
    code, out, _ = run(capsys, "events", "--resend", event["id"])
    assert out.strip() == f"resending to {created['id']}"
    drain(served)
    assert [r.headers["webhook-id"] for r in rx.wait_for(2)] == [event["id"]] * 2

    code, out, _ = run(capsys, "endpoints", "rotate", created["id"])
    assert out.strip().startswith("whsec_") and out.strip() != created["secret"]
    code, out, err = run(capsys, "endpoints", "create", "http://10.0.0.1/hook")
    assert code == 1
    assert "private-address" in err
    code, out, _ = run(capsys, "endpoints", "delete", created["id"])
    assert code == 0
    code, _, err = run(capsys, "endpoints", "show", created["id"])
    assert code == 1 and "404" in err
    with served.db.transaction() as session:
        assert records.get_job(session, job_id).status is JobStatus.FAILED


def test_endpoints_create_takes_each_type_by_flags(
    served: Container, capsys: pytest.CaptureFixture[str], s3_endpoint: str
) -> None:
    queue = f"{s3_endpoint}/123456789012/genvault-cli"
    code, out, err = run(
        capsys,
        "endpoints",
        "--json",
        "create",
        "--type",
        "sqs",
        "--queue-url",
        queue,
        "--region",
        "eu-west-1",
        "--endpoint-url",
        s3_endpoint,
        "--access-key-id",
        "AKIAGENVAULTCLITEST1",
        "--secret-access-key",
        "cli-secret-never-shown",
        "--format",
        "cloudevents",
        "--links",
        "stable",
        "--type",
        "job.archived",
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["type"] == "sqs"
    assert created["config"] == {
        "queue_url": queue,
        "region": "eu-west-1",
        "endpoint_url": s3_endpoint,
    }
    assert (created["format"], created["links"]) == ("cloudevents", "stable")
    assert created["event_types"] == ["job.archived"]
    assert "cli-secret-never-shown" not in out
    code, out, _ = run(capsys, "endpoints")
    assert f"sqs:{queue}" in out
    code, out, err = run(capsys, "endpoints", "create", "--type", "sns", "--region", "eu-west-1")
    assert code == 1
    assert "config.topic_arn" in err


def test_errors_are_one_line_and_exit_1_like_the_other_client_commands(
    served: Container, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENVAULT_TOKEN", "wrong")
    code, _, err = run(capsys, "endpoints")
    assert code == 1 and err.startswith("genvault: HTTP 401: the API refused the token")
    monkeypatch.setenv("GENVAULT_URL", f"http://127.0.0.1:{free_port()}")
    code, _, err = run(capsys, "events", "--type", "job.archived")
    assert code == 1 and "connection refused" in err and err.count("\n") == 1


def test_listen_registers_prints_verified_events_and_removes_itself(
    served: Container, tmp_path: Path
) -> None:
    genvault = Path(sys.executable).parent / "genvault"
    env = {
        "PATH": str(genvault.parent),
        "GENVAULT_URL": os.environ["GENVAULT_URL"],
        "GENVAULT_TOKEN": TOKEN,
    }
    proc = subprocess.Popen(
        [str(genvault), "listen", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        started = re.search(r"as endpoint (ep_\w+);", proc.stderr.readline())
        assert started, proc.stderr.read()
        endpoint_id = started.group(1)
        job_id = new_job(served)
        move(served, job_id, JobStatus.FAILED)
        drain(served)
        event = json.loads(proc.stdout.readline())
        assert event["type"] == "job.failed" and event["data"]["id"] == job_id
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert f"removed endpoint {endpoint_id}" in err
    with served.db.transaction() as session:
        assert session.get(EventEndpoint, endpoint_id) is None
