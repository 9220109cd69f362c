"""A webhook's one durable write: store the raw callback and queue the task that applies it.

The provider waits on the webhook, so the request does the least that keeps the promise
"answered 200 means kept": one INSERT of the callback and of a ``callback`` task, committed
together. The job's state machine runs later, in the worker (jobs/applying.py).

On PostgreSQL this is a single statement in autocommit mode, one round trip: data-modifying
CTEs insert the callback (ON CONFLICT DO NOTHING makes a retried body a no-op) and, only
for a new row, its task. SQLite has no data-modifying CTEs: there it is two statements in
one transaction (no extra round trip: the database is in process). Either way
``on_queued`` wakes the workers after the commit (tasks/wakeup.py).

Why plain SQL on the DBAPI connection rather than SQLAlchemy: this is the one statement
of the hot path, and SQLAlchemy's per-execution work (execution context, bind and result
processing) cost more CPU than the rest of the request together (bench/ingest.py). The
columns are those of db/models.py; tests/integration/test_speed.py reads the rows back
through the ORM on both databases.
"""

from __future__ import annotations

import enum
import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import Engine

from service.db.types import utcnow
from service.errors import NotFound
from service.providers.endpoints import ENDPOINTS

SOURCE = "webhook"


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


# The literals are SOURCE, TaskKind.CALLBACK and TaskStatus.QUEUED (a test checks them).
_POSTGRES = """
WITH job AS (
    SELECT id FROM jobs
    WHERE track_id = %(track_id)s AND endpoint = ANY(%(endpoints)s)
), stored AS (
    INSERT INTO callbacks (job_id, source, status, body, result, body_sha256, received_at)
    SELECT id, 'webhook', %(status)s, CAST(%(body)s AS json), CAST(%(result)s AS json),
           CAST(%(body_sha256)s AS text), %(now)s
    FROM job
    -- A known duplicate is not even attempted: a speculative insert writes WAL, and WAL
    -- means a flush at commit, which made duplicates cost as much as new callbacks.
    WHERE NOT EXISTS (
        SELECT 1 FROM callbacks c
        WHERE c.job_id = job.id AND c.source = 'webhook'
          AND c.body_sha256 = CAST(%(body_sha256)s AS text)
    )
    ON CONFLICT (job_id, source, body_sha256) DO NOTHING
    RETURNING id, job_id
), queued AS (
    INSERT INTO tasks (kind, job_id, payload, status, attempts, max_attempts,
                       run_after, created_at, updated_at)
    SELECT 'callback', job_id, json_build_object('callback_id', id),
           'queued', 0, %(max_attempts)s, %(now)s, %(now)s, %(now)s
    FROM stored
    RETURNING id
)
-- The CTEs run whatever this reads; it reads whether the job exists (an unknown track_id
-- is not a duplicate) and the new callback's id, if there is one.
SELECT EXISTS (SELECT 1 FROM job), (SELECT id FROM stored), (SELECT count(*) FROM queued)
"""

_SQLITE_LOOKUP = """
SELECT id, EXISTS (
    SELECT 1 FROM callbacks c
    WHERE c.job_id = jobs.id AND c.source = 'webhook' AND c.body_sha256 = :body_sha256
)
FROM jobs
WHERE track_id = :track_id AND endpoint IN (SELECT value FROM json_each(:endpoints))
"""
_SQLITE_STORE = """
INSERT INTO callbacks (job_id, source, status, body, result, body_sha256, received_at)
VALUES (:job_id, 'webhook', :status, :body, :result, :body_sha256, :now)
ON CONFLICT (job_id, source, body_sha256) DO NOTHING
RETURNING id
"""
_SQLITE_QUEUE = """
INSERT INTO tasks (kind, job_id, payload, status, attempts, max_attempts,
                   run_after, created_at, updated_at)
VALUES ('callback', :job_id, :payload, 'queued', 0, :max_attempts, :now, :now, :now)
"""


def _endpoints_of(provider: str) -> list[str]:
    # A track_id only answers to the provider its job was sent to.
    return [name for name, spec in ENDPOINTS.items() if spec.provider == provider]


class WriterTurns:
    """Webhook writers to one SQLite file take turns here instead of in SQLite's busy handler.

    SQLite's busy handler sleeps 1, 2, 5, 10... ms between attempts at a lock that is held
    for a fraction of a millisecond, so under load most writers slept past their turn (p99 in
    the hundreds of ms). A thread lock within the process and an flock on a file beside the
    database across processes wake the next writer the moment the last one commits.
    """

    def __init__(self, database: str | None) -> None:
        self._path = (
            f"{os.path.realpath(database)}-ingest.lock"
            if database and database != ":memory:"
            else None
        )
        self._threads = threading.Lock()
        self._fd = -1
        self._pid = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._threads:
            if self._path is None:
                yield
                return
            if self._pid != os.getpid():
                # A descriptor inherited through fork shares its lock with the parent: reopen.
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


@dataclass
class WebhookIngest:
    """Records callbacks for the webhook view.

    ``engine`` is this writer's own: on PostgreSQL made with AUTOCOMMIT and without pool
    pre-ping (a dropped connection is retried once instead, saving a round trip a request).
    psycopg prepares the statement on each connection after its fifth use: planning these
    CTEs costs five times more than running them.
    """

    engine: Engine
    max_attempts: int
    on_queued: Callable[[], None] = lambda: None
    turns: WriterTurns = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.turns = WriterTurns(
            self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        )

    def record(self, provider: str, track_id: str, values: dict[str, Any]) -> Outcome:
        """Keep the callback and queue its application; NotFound for an unknown track_id.

        ``values`` are the callback row's status, body (redacted), result and body_sha256.
        """
        params = {
            "track_id": track_id,
            "endpoints": _endpoints_of(provider),
            "status": values["status"],
            "body": json.dumps(values["body"]),
            "result": json.dumps(values["result"]),
            "body_sha256": values["body_sha256"],
            "max_attempts": self.max_attempts,
        }
        known, callback_id = self._write(params)
        if not known:
            raise NotFound("unknown track_id")
        if callback_id is None:
            return Outcome.DUPLICATE
        self.on_queued()
        return Outcome.ACCEPTED

    def _write(self, params: dict[str, Any]) -> tuple[bool, int | None]:
        postgres = self.engine.dialect.name == "postgresql"
        for attempt in (1, 2):
            # The pool's DBAPI connection itself: a SQLAlchemy Connection around it costs
            # about 75 us a request more.
            raw = self.engine.raw_connection()
            try:
                if postgres:
                    return _write_postgres(raw.dbapi_connection, params)
                return _write_sqlite(raw.dbapi_connection, params, self.turns)
            except self.engine.dialect.loaded_dbapi.OperationalError:
                # On PostgreSQL most likely a connection the database dropped (a restart):
                # throw it away and try once more on a fresh one.
                raw.invalidate()
                if attempt == 2 or not postgres:
                    raise
            finally:
                raw.close()
        raise AssertionError("unreachable")


def _write_postgres(dbapi: Any, params: dict[str, Any]) -> tuple[bool, int | None]:
    # The connection is in autocommit mode: this one statement is one transaction.
    with dbapi.cursor() as cur:
        cur.execute(_POSTGRES, params | {"now": utcnow()})
        known, callback_id, _tasks = cur.fetchone()
    return bool(known), callback_id


def _write_sqlite(
    dbapi: Any, params: dict[str, Any], turns: WriterTurns
) -> tuple[bool, int | None]:
    params = params | {
        "endpoints": json.dumps(params["endpoints"]),
        # As UTCDateTime stores it on SQLite: naive UTC, SQLAlchemy's text format.
        "now": utcnow().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    cur = dbapi.cursor()
    try:
        # Unknown track_ids and duplicates are answered from a read, which in WAL mode takes
        # no lock: only a new callback queues for the one writer.
        found = cur.execute(_SQLITE_LOOKUP, params).fetchone()
        if found is None:
            return False, None
        job_id, duplicate = found
        if duplicate:
            return True, None
        # db/session.py sets isolation_level=None: transactions are ours to begin. IMMEDIATE,
        # as everywhere else, takes the write lock up front.
        with turns.turn():
            cur.execute("BEGIN IMMEDIATE")
            try:
                stored = cur.execute(_SQLITE_STORE, params | {"job_id": job_id}).fetchone()
                if stored is None:  # the same body, stored by another request since the read
                    cur.execute("ROLLBACK")
                    return True, None
                payload = json.dumps({"callback_id": stored[0]})
                cur.execute(_SQLITE_QUEUE, params | {"job_id": job_id, "payload": payload})
                cur.execute("COMMIT")
            except BaseException:
                if dbapi.in_transaction:
                    cur.execute("ROLLBACK")
                raise
    finally:
        cur.close()
    return True, int(stored[0])
