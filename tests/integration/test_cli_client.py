"""The CLI as an HTTP client, against a real server on loopback (web + worker + sandbox)."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from service.app import create_app
from service.cli import main
from service.db.migrate import upgrade
from service.jobs.states import JobStatus
from service.sandbox.server import start_in_thread
from service.wiring import build
from tests.support.app import TOKEN, make_settings
from tests.support.s3 import free_port


@dataclass
class Live:
    url: str


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    sandbox, _ = start_in_thread("127.0.0.1", 0)
    port = free_port()
    settings = make_settings(
        f"sqlite:///{tmp_path / 'genvault.db'}",
        tmp_path,
        public_url=f"http://127.0.0.1:{port}",
        modelslab_base_url=f"{sandbox.url}/api",
        download_allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        download_allowed_hosts=("127.0.0.1",),
        worker_poll_interval=0.1,
    )
    c = build(settings)
    upgrade(c.db.engine)
    worker = c.worker(concurrency=2)
    threads = [threading.Thread(target=worker.run, daemon=True)]
    web = make_server("127.0.0.1", port, create_app(container=c), threaded=True)
    threads.append(threading.Thread(target=web.serve_forever, daemon=True))
    for t in threads:
        t.start()
    # The client needs the URL and a token: no database, no secret.
    for name in ("GENVAULT_DATABASE_URL", "GENVAULT_SECRET_KEY", "GENVAULT_API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENVAULT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("GENVAULT_TOKEN", TOKEN)
    try:
        yield Live(f"http://127.0.0.1:{port}")
    finally:
        web.shutdown()
        worker.stop()
        for t in threads:
            t.join(timeout=10)
        sandbox.shutdown()
        c.close()


def _submit(capsys: pytest.CaptureFixture[str], prompt: str, *extra: str) -> tuple[int, str, str]:
    code = main(
        [
            "submit",
            "modelslab/text2img",
            "--param",
            "model_id=flux",
            "--param",
            f"prompt={prompt}",
            "--param",
            "width=64",
            "--param",
            "height=64",
            "--meta",
            "order=o-1",
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_wait_jobs_and_audit(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _submit(capsys, "a red fox", "--wait", "--timeout", "30")
    assert code == 0, err
    job_id = out.split()[1]  # "id  <job id>"
    statuses = [line.split()[1] for line in err.splitlines()]
    # Each change once, as it happened, in the job's forward order; how many it sees depends
    # on how fast the worker is (it may be archiving by the first look).
    order = ["queued", "submitted", "processing", "archiving", "archived"]
    assert statuses[-1] == "archived" and len(statuses) == len(set(statuses))
    assert statuses == sorted(statuses, key=order.index)
    assert re.search(r"^status +archived$", out, re.M) and "SHA256" in out

    assert main(["jobs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [j["id"] for j in listed["jobs"]] == [job_id]
    assert main(["jobs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "CREATED", "(UTC)"]
    assert table[1].split()[0] == job_id and "archived" in table[1]
    assert main(["jobs", job_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["status"] == "archived" and shown["metadata"] == {"order": "o-1"}

    assert main(["audit", "--job", job_id]) == 0
    assert capsys.readouterr().out.startswith(f"{job_id}  ok  2 objects checked")
    assert main(["audit", "--job", job_id, "--job", job_id, "--json"]) == 0
    captured = capsys.readouterr()
    assert [r["ok"] for r in json.loads(captured.out)] == [True, True]
    assert "audited 2/2 jobs, 0 with problems" in captured.err


def test_retry_and_one_line_errors(live: Live, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _submit(capsys, "[sandbox:error] no luck", "--wait", "--json")
    assert code == 1
    job = json.loads(out)
    assert job["status"] == "failed" and job["error"]["code"]
    assert err.splitlines()[-1].split()[1] == "failed"

    assert main(["retry", job["id"]]) == 0
    # The answer shows the job as it is: the live worker may already have taken it (and the
    # sandbox failed it again), so any state of a re-run job may be printed.
    printed = re.fullmatch(rf"{job['id']}  retrying: now (\w+)\n", capsys.readouterr().out)
    assert printed is not None and printed[1] in {s.value for s in JobStatus}
    # It really ran again: the job failed anew, after the retry.
    assert main(["jobs", job["id"], "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    for _ in range(100):
        if again["status"] == "failed" and again["updated_at"] > job["updated_at"]:
            break
        time.sleep(0.1)
        assert main(["jobs", job["id"], "--json"]) == 0
        again = json.loads(capsys.readouterr().out)
    assert again["status"] == "failed" and again["updated_at"] > job["updated_at"], again
    assert main(["retry", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("genvault: HTTP 404") and err.count("\n") == 1

    code, _, err = _submit(capsys, "x", "--param", "width=99999")
    assert code == 1 and err.startswith("genvault: HTTP 422: params.width")


def test_errors_are_one_line_and_a_non_zero_exit(
    live: Live, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENVAULT_TOKEN", "wrong")
    assert main(["jobs"]) == 1
    assert capsys.readouterr().err.startswith("genvault: HTTP 401: the API refused the token")
    monkeypatch.setenv("GENVAULT_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["jobs"]) == 1
    err = capsys.readouterr().err
    assert "connection refused" in err and err.count("\n") == 1


def test_the_installed_command_needs_no_database_or_secret(live: Live, tmp_path: Path) -> None:
    env = {
        "PATH": str(Path(sys.executable).parent),
        "GENVAULT_URL": live.url,
        "GENVAULT_TOKEN": TOKEN,
    }
    # An empty directory: no .env, no var/; only the URL and the token.
    run = subprocess.run(
        [str(Path(sys.executable).parent / "genvault"), "jobs", "--json"],
        cwd=tmp_path / "..",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["jobs"] == []
