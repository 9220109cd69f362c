"""The fast path's correctness (no timing here: bench/ measures speed).

- the webhook's single write: new, duplicate, unknown and late callbacks on both databases,
  with the job's state machine applied afterwards by the worker's callback task;
- a worker in another process wakes promptly when a task is queued (NOTIFY / socket);
- several worker processes never run one task twice while its lease holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from service.db.models import Callback, Job, Task
from service.db.session import Database
from service.errors import NotFound
from service.jobs.results import callback_values
from service.providers.base import ProviderResult, ResultStatus
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue
from service.tasks.wakeup import build_wakeup, notify_on_commit
from service.wiring import Container
from tests.support.app import AUTH, apply_callbacks, post_callback, submit_job

ROOT = Path(__file__).resolve().parents[2]
SUCCESS = {
    "status": "success",
    "id": 81443063,
    "output": ["https://cdn2.stablediffusionapi.com/generations/a-0.png"],
    "meta": {"seed": 1, "width": 512, "height": 512},
}


_job = submit_job
_hook = post_callback


def test_the_webhook_stores_one_pending_callback_and_the_worker_applies_it(
    client: FlaskClient, container: Container
) -> None:
    job = _job(client)
    body = {**SUCCESS, "track_id": job["track_id"]}
    r = _hook(client, job["track_id"], body)
    assert (r.status_code, r.get_json()) == (200, {"status": "accepted"})
    with container.db.transaction() as s:
        callbacks = s.execute(select(Callback)).scalars().all()
        tasks = s.execute(select(Task).where(Task.kind == TaskKind.CALLBACK)).scalars().all()
        status = s.execute(select(Job.status).where(Job.id == job["id"])).scalar_one()
    # Read back through the ORM: the hand-written statement wrote what the models expect.
    [cb] = callbacks
    assert (cb.job_id, cb.source, cb.status) == (job["id"], "webhook", "success")
    assert cb.body["id"] == 81443063 and cb.result["outputs"] == SUCCESS["output"]
    assert cb.received_at.tzinfo is not None
    assert cb.pending and tasks == [], "the callback waits as a row, without a task"
    assert status == "queued", "the request itself does not run the state machine"

    # What the worker's loop does before each claim (PendingCallbacks, its intake).
    assert apply_callbacks(container) == 1
    shown = client.get(f"/v1/jobs/{job['id']}", headers=AUTH).get_json()
    assert shown["status"] == "archiving"
    with container.db.transaction() as s:
        archive = s.execute(select(Task).where(Task.kind == TaskKind.ARCHIVE)).scalar_one()
        result_callback = s.execute(select(Job.result_callback_id)).scalar_one()
        pending = s.execute(select(Callback.pending)).scalar_one()
    assert archive.job_id == job["id"] and result_callback == cb.id
    assert not pending
    assert apply_callbacks(container) == 0, "applied once"


def test_duplicates_unknown_track_ids_and_other_providers_write_nothing(
    client: FlaskClient, container: Container
) -> None:
    job = _job(client)
    body = {**SUCCESS, "track_id": job["track_id"]}
    assert _hook(client, job["track_id"], body).get_json() == {"status": "accepted"}
    assert _hook(client, job["track_id"], body).get_json() == {"status": "duplicate"}
    unknown = _hook(client, "0" * 32, {**SUCCESS, "track_id": "0" * 32})
    assert unknown.status_code == 404
    # Recorded as if from the other provider (whose webhooks the view refuses earlier): the
    # statement itself only matches jobs sent to the provider that calls.
    values = callback_values(ProviderResult(ResultStatus.SUCCESS, raw=body), digest="x" * 64)
    with pytest.raises(NotFound):
        container.receiver.ingest.record("aimlapi", job["track_id"], values)
    with container.db.transaction() as s:
        assert len(s.execute(select(Callback.id)).all()) == 1
        kinds = Counter(s.execute(select(Task.kind)).scalars())
    assert kinds == Counter({TaskKind.SUBMIT: 1})


def test_a_late_failure_is_stored_but_never_moves_the_job_back(
    client: FlaskClient, container: Container
) -> None:
    job = _job(client)
    _hook(client, job["track_id"], {**SUCCESS, "track_id": job["track_id"]})
    late = {"status": "failed", "id": 81443063, "message": "Failed", "track_id": job["track_id"]}
    assert _hook(client, job["track_id"], late).get_json() == {"status": "accepted"}
    assert apply_callbacks(container) == 2
    shown = client.get(f"/v1/jobs/{job['id']}", headers=AUTH).get_json()
    assert shown["status"] == "archiving"
    # Applied in the other order (the failure first), the success still cannot win: the
    # worker's state machine is the one that refuses moves backwards, as before.
    second = _job(client)
    _hook(client, second["track_id"], {**late, "track_id": second["track_id"]})
    _hook(client, second["track_id"], {**SUCCESS, "track_id": second["track_id"]})
    assert apply_callbacks(container) == 2
    assert client.get(f"/v1/jobs/{second['id']}", headers=AUTH).get_json()["status"] == "failed"


def test_one_batch_answers_each_callback_for_itself(
    client: FlaskClient, container: Container
) -> None:
    """The group-committed write (db/group_commit.py): new, repeated-in-the-batch, unknown,
    other-provider and already-stored callbacks side by side, each with its own answer."""
    from service.jobs.ingest import _Callback

    a, b, stored = _job(client), _job(client), _job(client)
    assert _hook(client, stored["track_id"], {**SUCCESS, "n": 0}).get_json() == {
        "status": "accepted"
    }

    def cb(track_id: str, digest: str, provider: str = "modelslab") -> _Callback:
        return _Callback(
            provider, track_id, "success", f'{{"d": "{digest}"}}', '{"status": "success"}', digest
        )

    ingest = container.receiver.ingest
    with container.db.transaction() as s:
        [already] = s.execute(select(Callback.body_sha256)).scalars()
    written = ingest._write(  # the batch as the leader writes it
        [
            cb(a["track_id"], "1" * 64),
            cb(a["track_id"], "1" * 64),  # the same body again, in the same batch
            cb("f" * 32, "2" * 64),  # unknown track_id
            cb(b["track_id"], "3" * 64, provider="aimlapi"),  # not the job's provider
            cb(stored["track_id"], already),  # stored by an earlier request
            cb(b["track_id"], "4" * 64),
            cb(a["track_id"], "5" * 64),  # a second, different body for the same job
        ]
    )
    assert written == [
        (True, True),
        (True, False),  # answered as a duplicate of the first
        (False, False),
        (False, False),
        (True, False),
        (True, True),
        (True, True),
    ]
    with container.db.transaction() as s:
        rows = s.execute(select(Callback.job_id, Callback.body_sha256, Callback.pending)).all()
    assert sorted(rows) == sorted(
        [
            (stored["id"], already, True),
            (a["id"], "1" * 64, True),
            (b["id"], "4" * 64, True),
            (a["id"], "5" * 64, True),
        ]
    ), "stored once each, and every new row waits for the worker"


def test_one_body_for_several_jobs_in_one_batch_is_stored_for_each(
    client: FlaskClient, container: Container
) -> None:
    """One body sent for several jobs is a callback of each: the dedupe is per job."""
    from service.jobs.ingest import _Callback

    a, b, c = _job(client), _job(client), _job(client)
    same = "6" * 64
    written = container.receiver.ingest._write(
        [
            _Callback("modelslab", t, "success", '{"same": true}', '{"status": "success"}', same)
            for t in (a["track_id"], b["track_id"], c["track_id"])
        ]
    )
    assert written == [(True, True)] * 3
    with container.db.transaction() as s:
        jobs = s.execute(select(Callback.job_id).where(Callback.body_sha256 == same)).scalars()
        assert sorted(jobs) == sorted([a["id"], b["id"], c["id"]])


def test_after_a_batch_sqlite_can_checkpoint_its_whole_log(
    client: FlaskClient, container: Container
) -> None:
    """The batch runs in autocommit mode, so a statement left unfinished would hold its read
    transaction open until the next batch: the WAL could not be checkpointed past it."""
    if container.db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write-ahead log: PostgreSQL has none of ours to check")
    import sqlite3

    from service.jobs.ingest import _Callback

    job = _job(client)
    container.receiver.ingest._write(
        [
            _Callback("modelslab", job["track_id"], "success", "{}", "{}", "7" * 64),
            _Callback("modelslab", "f" * 32, "success", "{}", "{}", "8" * 64),  # unknown
        ]
    )
    other = sqlite3.connect(container.db.engine.url.database or "", isolation_level=None)
    try:
        busy, _log, _done = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        other.close()
    assert busy == 0, "a reader still holds the log"


def test_sqlite_skips_the_foreign_key_check_only_on_the_writers_own_connection(
    client: FlaskClient, container: Container
) -> None:
    """The webhook's statement finds the job itself, so its connection checks no foreign
    key; that connection leaves the pool, and every other keeps checking them."""
    if container.db.engine.dialect.name != "sqlite":
        pytest.skip("a setting of SQLite's connections: PostgreSQL always checks")
    import sqlite3

    from sqlalchemy.exc import IntegrityError

    job = _job(client)
    assert _hook(client, job["track_id"], {**SUCCESS, "track_id": job["track_id"]}).get_json() == {
        "status": "accepted"
    }
    ingest = container.receiver.ingest
    own = ingest._raw.dbapi_connection
    assert own.execute("PRAGMA foreign_keys").fetchone() == (0,)
    # Every pooled connection still checks: a callback for no job is refused.
    pooled = [container.db.engine.raw_connection() for _ in range(3)]
    try:
        assert all(p.dbapi_connection is not own for p in pooled)
        assert {p.dbapi_connection.execute("PRAGMA foreign_keys").fetchone() for p in pooled} == {
            (1,)
        }
    finally:
        for p in pooled:
            p.close()
    with pytest.raises(IntegrityError), container.db.transaction() as s:
        s.add(
            Callback(
                job_id="no-such-job",
                source="poll",
                status="success",
                body={},
                result={},
                body_sha256="9" * 64,
            )
        )
    # Let go, the connection is closed, not returned to the pool with the check off...
    ingest.close()
    with pytest.raises(sqlite3.ProgrammingError):
        own.execute("SELECT 1")
    # ...and so it is when a write fails on it; the next batch takes a fresh one.
    second = _job(client)
    values = callback_values(ProviderResult(ResultStatus.SUCCESS, raw=SUCCESS), digest="a" * 64)
    ingest.record("modelslab", second["track_id"], values)
    failing = ingest._raw.dbapi_connection
    failing.execute("PRAGMA query_only=ON")
    values = callback_values(ProviderResult(ResultStatus.SUCCESS, raw=SUCCESS), digest="b" * 64)
    with pytest.raises(sqlite3.OperationalError):
        ingest.record("modelslab", second["track_id"], values)
    with pytest.raises(sqlite3.ProgrammingError):
        failing.execute("SELECT 1")
    assert _hook(
        client, job["track_id"], {**SUCCESS, "id": 2, "track_id": job["track_id"]}
    ).get_json() == {"status": "accepted"}, "the next batch takes a fresh connection"


def test_a_body_with_an_escaped_nul_is_stored_as_sent(
    client: FlaskClient, container: Container
) -> None:
    # Valid JSON that PostgreSQL text cannot hold once unescaped: the batch must carry it
    # as JSON text all the way into the json column.
    job = _job(client)
    body = {**SUCCESS, "track_id": job["track_id"], "message": "a\u0000b"}
    assert _hook(client, job["track_id"], body).get_json() == {"status": "accepted"}
    with container.db.transaction() as s:
        [stored] = s.execute(select(Callback.body)).scalars()
    assert stored["message"] == "a\u0000b"


def test_concurrent_webhooks_each_get_their_own_answer(
    client: FlaskClient, container: Container
) -> None:
    """Sixteen threads at once, so that requests share writes: every new body is stored
    once and pending, every repeat is a duplicate, every unknown track_id a 404."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [_job(client) for _ in range(12)]
    app = client.application

    def post(n: int) -> tuple[int, int, str]:
        job = jobs[n % 12]
        # Each job gets two distinct bodies, each sent twice; every fourth request unknown.
        body = {**SUCCESS, "track_id": job["track_id"], "n": (n // 12) % 2}
        track_id = job["track_id"] if n % 4 else "e" * 32
        with app.test_client() as c:
            r = _hook(c, track_id, body)
        return n, r.status_code, (r.get_json() or {}).get("status", "")

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(48)))
    unknown = [a for a in answers if a[0] % 4 == 0]
    known = [a for a in answers if a[0] % 4]
    assert {code for _, code, _ in unknown} == {404}
    assert {code for _, code, _ in known} == {200}
    accepted = [a for a in known if a[2] == "accepted"]
    with container.db.transaction() as s:
        stored = s.execute(select(Callback.job_id, Callback.body_sha256)).all()
        pending = s.execute(select(func.count()).where(Callback.pending)).scalar_one()
    assert len(stored) == len(set(stored)) == len(accepted), "each body stored once"
    assert pending == len(accepted)
    # Which bodies reached the database: exactly those of the known requests, deduplicated.
    sent = {(jobs[n % 12]["id"], (n // 12) % 2) for n, _, _ in known}
    assert len(stored) == len(sent)


def _spawn(
    url: str, out: Path, mode: str, env: dict[str, str], task_seconds: float = 0.0
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_proc", url, str(out), mode, str(task_seconds)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_a_worker_in_another_process_wakes_when_a_task_is_queued(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    wakeup = build_wakeup(database_url)
    assert wakeup is not None
    notify_on_commit(db, wakeup)  # as wiring.build does
    queue = TaskQueue(db, lease_seconds=60, default_max_attempts=3)
    out = tmp_path / "worker.out"
    proc = _spawn(database_url, out, "wake", os.environ.copy())
    try:
        assert _wait_for(lambda: "ready" in _lines(out), 20), "the worker never listened"
        time.sleep(0.3)  # its first (empty) claim is over: it now sleeps for 60 s
        for n in range(3):
            with db.transaction() as s:
                queue.enqueue(s, TaskKind.SUBMIT, job_id=None, payload={"n": n})
            # Its poll interval is 60 s: only the wake-up can make it run the task this soon.
            ran = lambda: len([x for x in _lines(out) if x.startswith("ran")]) == n + 1  # noqa: E731, B023
            assert _wait_for(ran, 5), f"not woken for task {n}: {_lines(out)}"
    finally:
        _stop([proc])
        wakeup.close()


def test_an_event_delivery_wakes_a_worker_in_another_process(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """The outbox adds its delivery tasks inside a flush, not through TaskQueue.enqueue: its
    commit must still wake the workers (it waited for the next claim or poll)."""
    from service.db.models import EventEndpoint
    from service.events import outbox
    from service.events.types import EventType

    wakeup = build_wakeup(database_url)
    assert wakeup is not None
    notify_on_commit(db, wakeup)
    with db.transaction() as s:
        s.add(EventEndpoint(id="ep_1", url="https://example.com/hook", secret="whsec_x"))
    out = tmp_path / "worker.out"
    proc = _spawn(database_url, out, "wake", os.environ.copy())
    try:
        assert _wait_for(lambda: "ready" in _lines(out), 20), "the worker never listened"
        time.sleep(0.3)  # its first (empty) claim is over: it now sleeps for 60 s
        with db.transaction() as s:
            outbox.emit(s, EventType.JOB_ARCHIVED, {"job_id": "j"}, project="default", job_id=None)
        ran = lambda: any(x.startswith("ran") for x in _lines(out))  # noqa: E731
        assert _wait_for(ran, 5), f"the delivery did not wake the worker: {_lines(out)}"
    finally:
        _stop([proc])
        wakeup.close()


def test_several_worker_processes_never_run_a_task_twice(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    queue = TaskQueue(db, lease_seconds=60, default_max_attempts=3)
    outs = [tmp_path / f"w{i}.out" for i in range(3)]
    # Tasks of 10 ms: short enough for each worker to prefetch a batch beyond its runners,
    # long enough that the first worker up cannot finish them all alone (its four runners
    # need 750 ms, fifteen of the others' 50 ms polls; with 2 ms tasks a loaded CI machine
    # once let one worker drain all 300 before the others claimed).
    procs = [_spawn(database_url, out, "poll", os.environ.copy(), 0.01) for out in outs]
    try:
        ready = lambda: all("ready" in _lines(out) for out in outs)  # noqa: E731
        assert _wait_for(ready, 20), "the workers never started"
        with db.transaction() as s:
            for n in range(300):
                queue.enqueue(s, TaskKind.SUBMIT, job_id=None, payload={"n": n})

        def runs() -> list[str]:
            return [x for out in outs for x in _lines(out) if x.startswith("ran")]

        def all_done() -> bool:
            with db.transaction() as s:
                return Counter(s.execute(select(Task.status)).scalars()) == {"done": 300}

        assert _wait_for(lambda: len(runs()) >= 300, 25), f"only {len(runs())} of 300 ran"
        assert _wait_for(all_done, 10)
    finally:
        _stop(procs)
    counts = Counter(runs())
    assert len(counts) == 300
    assert max(counts.values()) == 1, "a task ran twice"
    assert sum(1 for out in outs if any(x.startswith("ran") for x in _lines(out))) >= 2, (
        "the test needs several workers to have claimed"
    )
