"""The way up (README "Operations", issue 18), as an operator would take it, jobs in flight.

Real processes throughout: gunicorn with deploy/gunicorn.conf.py, `genvault worker` and
`genvault sandbox`, first on the embedded default (SQLite and a folder), then on PostgreSQL
and moto's S3 server, with the runbook's commands run as commands in between. The sandbox
is the provider and keeps working while genvault is down: results become ready and their
webhooks go nowhere, and the polls the copied tasks hold have to make up for them.

Nothing here depends on the archive's key layout: what is compared is what the API answers.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from sqlalchemy import select

from service.db.enums import TaskKind, TaskStatus
from service.db.models import Task
from service.db.session import make_engine
from service.db.types import utcnow
from tests.support.archive_checks import png_bytes
from tests.support.db import create_pg_database, drop_pg_database
from tests.support.s3 import free_port
from tests.support.stack import BIN, ROOT, SECRET, TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

TEXT2IMG = "modelslab/text2img"
IMG2IMG = "modelslab/img2img"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Seconds before the sandbox has a result for the jobs left with it: long enough that the
# web tier is down when it is ready (the webhooks go nowhere), short enough that the polls
# the copied tasks hold find it soon after the restart.
IN_FLIGHT_ETA = 10.0
# A worker's lease, longer than the default (30 s) as where archives are large: the task the
# killed worker held stays leased in the old database for as long as this test runs, and a
# copy that kept that lease would keep its job waiting past SETTLE.
LEASE = 120
# The bound on each wait. Generous: the machine may be busy; what must be prompt (a task
# the dead worker held) is checked in the database instead of by the clock.
SETTLE = 45.0
# Fields of a job that the move must not change (the links and locations may: they name
# the new archive).
KEPT = ("id", "project", "track_id", "endpoint", "created_at", "metadata")
ASSET_KEPT = ("index", "key", "sha256", "size", "content_type", "width", "height")


class Processes:
    """The processes of one test, each with its own log; stopped as a process group."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def run(
        self, name: str, argv: list[str], env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        """A command to completion (the runbook's steps), its output kept in the logs too."""
        done = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        with (self.logs / f"{name}.log").open("a") as log:
            log.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}exit {done.returncode}\n")
        return done

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"{name} did not stop on {sig!r}\n{self.tail()}") from None

    def stop_all(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            del self.procs[name]

    def tail(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def wait_http(self, name: str, url: str, timeout: float = 30) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.tail()}")
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass  # not listening yet
            time.sleep(0.1)
        raise AssertionError(f"{url} did not come up\n{self.tail()}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = create_pg_database()  # skips (or fails under GENVAULT_REQUIRE_POSTGRES) without one
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.stop_all()


def _env(web_port: int, sandbox_port: int, **settings: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GENVAULT_", "MODELSLAB_", "AIMLAPI_", "AWS_"))
    }
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            # The same public URL and secret on both sides of the move (the runbook says why).
            "GENVAULT_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
            "GENVAULT_BIND": f"127.0.0.1:{web_port}",
            "WEB_CONCURRENCY": "2",
            "GENVAULT_SECRET_KEY": SECRET,
            "GENVAULT_API_TOKENS": TOKEN,
            "MODELSLAB_BASE_URL": f"http://127.0.0.1:{sandbox_port}/api",
            "MODELSLAB_API_KEY": "ml-e2e-key-secret",
            "GENVAULT_DOWNLOAD_ALLOWED_NETWORKS": "127.0.0.1/32",
            "GENVAULT_DOWNLOAD_ALLOWED_HOSTS": "127.0.0.1",
            "GENVAULT_WORKER_POLL_INTERVAL": "0.2",
            "GENVAULT_POLL_GRACE_SECONDS": "0.5",
            "GENVAULT_RETRY_BASE_SECONDS": "0.2",
            "GENVAULT_RECONCILE_INTERVAL_SECONDS": "1",
            "GENVAULT_LOG_JSON": "true",
        }
    )
    env.update(settings)
    return env


def _get(url: str) -> Any:
    r = requests.get(url, headers=AUTH, timeout=10)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


def _kept(job: dict[str, Any], *, archived: bool) -> dict[str, Any]:
    """What the move must not change in a job's answer (links and locations name the new
    archive, so they may); for a job archived before the move, its assets as well."""
    out = {k: job[k] for k in KEPT}
    if archived:
        out["manifest_key"] = job["manifest_key"]
        out["provider_request_id"] = job["provider_request_id"]
        out["assets"] = [{k: a[k] for k in ASSET_KEPT} for a in job["assets"]]
    return out


class HeldOrigin:
    """A loopback origin for one input image whose first request hangs until released, so
    a worker archiving the job is caught in the middle of it."""

    def __init__(self, body: bytes) -> None:
        self.sha256 = hashlib.sha256(body).hexdigest()
        self.released = threading.Event()
        self.asked = threading.Event()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not origin.asked.is_set():
                    origin.asked.set()
                    origin.released.wait(60)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the worker that asked is dead

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/held.png"

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def held_origin() -> Iterator[HeldOrigin]:
    origin = HeldOrigin(png_bytes(24, 16, (10, 120, 200)))
    try:
        yield origin
    finally:
        origin.close()


def _archive_lease(env: dict[str, str], job_id: str) -> datetime | None:
    """Until when the job's archive task is leased, read from the database of ``env``."""
    engine = make_engine(env["GENVAULT_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            status, until = conn.execute(
                select(Task.status, Task.locked_until).where(
                    Task.job_id == job_id, Task.kind == TaskKind.ARCHIVE.value
                )
            ).one()
    finally:
        engine.dispose()
    assert status == TaskStatus.RUNNING, status
    return until


def _failed_webhooks(logs: Path) -> int:
    """Webhooks the sandbox could not deliver (nobody listening), from its log."""
    lines = (logs / "sandbox.log").read_text(errors="replace").splitlines()
    return sum("sandbox webhook to" in line and "failed" in line for line in lines)


def test_sqlite_and_a_folder_to_postgresql_and_s3_with_jobs_in_flight(
    tmp_path: Path,
    processes: Processes,
    held_origin: HeldOrigin,
    pg_url: str,
    s3_endpoint: str,
    s3_bucket: str,
) -> None:
    laps: list[tuple[str, float]] = []
    last = time.monotonic()

    def lap(name: str) -> None:
        nonlocal last
        now = time.monotonic()
        laps.append((name, now - last))
        last = now

    web_port, sandbox_port = free_port(), free_port()
    web = f"http://127.0.0.1:{web_port}"
    var = tmp_path / "var"
    var.mkdir()
    new_archive = f"s3://{s3_bucket}/genvault"
    before_env = _env(
        web_port,
        sandbox_port,
        GENVAULT_DATABASE_URL=f"sqlite:///{var / 'genvault.db'}",
        GENVAULT_ARCHIVE_URL=f"file://{var / 'archive'}",
        GENVAULT_WORKER_LEASE_SECONDS=str(LEASE),
        # What the runbook exports first: `archive copy` writes to S3 from the old settings.
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL_S3=s3_endpoint,
    )
    after_env = {
        **before_env,
        "GENVAULT_DATABASE_URL": pg_url,
        "GENVAULT_ARCHIVE_URL": new_archive,
        # The reconciler gives a job that lost its task a new one after this long: off, so
        # that the jobs in flight can only finish through the tasks that were copied.
        "GENVAULT_JOB_ORPHAN_AFTER_SECONDS": "3600",
    }
    genvault = str(BIN / "genvault")
    gunicorn = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "service.app:create_app()"]

    def start(env: dict[str, str], phase: str) -> None:
        processes.spawn(f"web-{phase}", gunicorn, env)
        processes.wait_http(f"web-{phase}", f"{web}/healthz")
        processes.spawn(f"worker-{phase}", [genvault, "worker"], env)

    def submit(n: int, prompt: str, endpoint: str = TEXT2IMG, **params: Any) -> str:
        r = requests.post(
            f"{web}/v1/jobs",
            json={
                "endpoint": endpoint,
                "params": {"model_id": "flux", "prompt": prompt, "width": 256, **params},
                "metadata": {"order": f"o-{n}", "batch": "way-up"},
            },
            headers=AUTH,
            timeout=10,
        )
        assert r.status_code == 202, r.text
        return str(r.json()["id"])

    def job(job_id: str) -> dict[str, Any]:
        return _get(f"{web}/v1/jobs/{job_id}")  # type: ignore[no-any-return]

    def wait(ids: list[str], done: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            jobs = {i: job(i) for i in ids}
            if all(done(j) for j in jobs.values()):
                return
            if time.monotonic() > deadline:
                waiting = {i: j["status"] for i, j in jobs.items() if not done(j)}
                raise AssertionError(f"timed out waiting for {waiting}\n{processes.tail()}")
            time.sleep(0.2)

    def until(what: str, predicate: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{processes.tail()}")
            time.sleep(0.1)

    # The embedded default, as `make run` has it; its sandbox is the provider throughout.
    migrate = processes.run("migrate-sqlite", [genvault, "migrate"], before_env)
    assert migrate.returncode == 0, migrate.stderr
    processes.spawn("sandbox", [genvault, "sandbox", "--port", str(sandbox_port)], before_env)
    processes.wait_http("sandbox", f"http://127.0.0.1:{sandbox_port}/healthz")
    start(before_env, "sqlite")
    lap("started on SQLite")

    # Jobs that are done before the move (one and two images each).
    quick = [submit(n, f"way up {n}", samples=1 + n % 2) for n in range(5)]
    wait(quick, lambda j: j["status"] == "archived", SETTLE)
    lap("quick jobs archived")

    # 1. The bulk of the bytes, while everything runs.
    bulk = processes.run(
        "archive-copy-1", [genvault, "archive", "copy", "--to", new_archive], before_env
    )
    assert bulk.returncode == 0, bulk.stdout + bulk.stderr
    lap("archive copy 1")
    # A job erased after its objects were copied: it must not live on in the new archive.
    erased = quick[0]
    gone = job(erased)
    r = requests.delete(
        f"{web}/v1/jobs/{erased}", json={"reason": "asked to, mid-move"}, headers=AUTH, timeout=30
    )
    assert r.status_code == 200 and r.json()["status"] == "deleted", r.text
    gone_keys = [gone["manifest_key"], *(a["key"] for a in gone["assets"])]

    # A job being archived: its outputs are written, its input image is on its way.
    held = submit(
        5,
        "way up, held",
        IMG2IMG,
        init_image=held_origin.url,
        model_id="flux-kontext-dev",
        width=512,
    )
    until("the held input to be asked for", held_origin.asked.is_set, SETTLE)
    # Jobs the provider is still working on: their webhooks will find nobody.
    slow = [submit(n, f"way up {n} [sandbox:processing,eta={IN_FLIGHT_ETA}]") for n in (6, 7, 8)]
    wait(slow, lambda j: j["status"] == "processing", SETTLE)
    # 2. Stop the workers and the web tier. The worker dies (kill -9: the machine went down,
    # the worst case) in the middle of the held job; jobs accepted after it stay queued.
    assert processes.stop("worker-sqlite", signal.SIGKILL) == -signal.SIGKILL
    held_origin.released.set()  # the dead worker's request is answered, to nobody
    queued = [submit(n, f"way up {n}") for n in range(9, 12)]
    before = {i: job(i) for i in [*quick, held, *slow, *queued]}
    listed_before = {j["id"] for j in _get(f"{web}/v1/jobs?limit=100")["jobs"]}
    assert processes.stop("web-sqlite") == 0
    lap("jobs in flight, stopped")
    states = {i: j["status"] for i, j in before.items()}
    assert states[erased] == "deleted", states
    assert [states[i] for i in quick[1:]] == ["archived"] * (len(quick) - 1), states
    assert states[held] == "archiving", states
    assert [states[i] for i in slow] == ["processing"] * len(slow), states
    assert [states[i] for i in queued] == ["queued"] * len(queued), states

    # 3. An empty database at this version; 4. every row; 5. what was written since step 1
    # (the held job's outputs among it).
    migrate = processes.run("migrate-pg", [genvault, "migrate"], after_env)
    assert migrate.returncode == 0, migrate.stderr
    rows = processes.run("db-copy", [genvault, "db", "copy", "--to", pg_url], before_env)
    assert rows.returncode == 0, rows.stdout + rows.stderr
    assert "counts match" in rows.stdout
    lap("migrate, db copy")
    # The dead worker's lease still runs in the old database; in the new one nobody holds
    # the task, and its lease ended with the copy: the new workers need not wait for it.
    source_lease, target_lease = _archive_lease(before_env, held), _archive_lease(after_env, held)
    assert source_lease is not None and source_lease > utcnow(), source_lease
    assert target_lease is not None and target_lease <= utcnow(), target_lease
    rest = processes.run(
        "archive-copy-2", [genvault, "archive", "copy", "--to", new_archive], before_env
    )
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert "conflicts 0, failed 0" in rest.stdout, rest.stdout
    lap("archive copy 2")
    assert not rest.stdout.startswith("copied 0 "), rest.stdout  # the held job's outputs
    # The provider finished the slow jobs meanwhile; their webhooks reached nobody.
    until("the webhooks to fail", lambda: _failed_webhooks(processes.logs) >= len(slow), SETTLE)

    # 6. Start on PostgreSQL and S3: the jobs in flight finish there.
    start(after_env, "pg")
    lap("started on PostgreSQL")
    wait(list(before), lambda j: j["status"] in ("archived", "failed", "deleted"), SETTLE)
    after = {i: job(i) for i in before}
    expected = {**dict.fromkeys(before, "archived"), erased: "deleted"}
    assert {i: j["status"] for i, j in after.items()} == expected
    lap("jobs in flight archived")

    # Nothing lost from the API's answers: the same jobs, the same facts, the same assets.
    for job_id, old in before.items():
        new = after[job_id]
        assert _kept(new, archived=old["status"] == "archived") == _kept(
            old, archived=old["status"] == "archived"
        )
        assert (new["assets"] and new["manifest_key"]) or job_id == erased, new
        if old["provider_request_id"]:  # the provider's job, not a second one
            assert new["provider_request_id"] == old["provider_request_id"], (old, new)
    listed_after = {j["id"] for j in _get(f"{web}/v1/jobs?limit=100")["jobs"]}
    assert listed_after == listed_before == set(before)
    # The held job was archived whole by the worker that took it over, its input as well.
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    manifest = json.loads(
        s3.get_object(Bucket=s3_bucket, Key=f"genvault/{after[held]['manifest_key']}")[
            "Body"
        ].read()
    )
    assert [i.get("sha256") for i in manifest["inputs"]] == [held_origin.sha256], manifest
    # The erased job's objects were copied by the first pass; the second took them away.
    for key in gone_keys:
        with pytest.raises(ClientError, match="404"):
            s3.head_object(Bucket=s3_bucket, Key=f"genvault/{key}")

    # Every link answers, from the new archive, with the bytes the API describes.
    for answer in after.values():
        for asset in answer["assets"]:
            assert asset["uri"].startswith(f"{new_archive}/"), asset
            r = requests.get(asset["url"], timeout=10)
            assert r.status_code == 200, (asset, r.status_code)
            assert hashlib.sha256(r.content).hexdigest() == asset["sha256"], asset

    # New work on the new places: rows past the copied ids (PostgreSQL's sequences).
    fresh = submit(12, "way up, after the move")
    wait([fresh], lambda j: j["status"] == "archived", SETTLE)
    lap("links checked, a new job archived")

    # 7. Every archived job checks out.
    audit = processes.run("audit", [genvault, "audit"], after_env)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    lap("audit")
    print("\nthe way up: " + ", ".join(f"{name} {secs:.1f} s" for name, secs in laps))
