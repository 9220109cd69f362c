"""A webhook's one durable write: store the raw callback, pending, for the worker to apply.

The provider waits on the webhook, so the request does the least that keeps the promise
"answered 200 means kept": one INSERT of the callback, marked pending. The job's state
machine runs later, in the worker, which finds pending callbacks without reading the table
(jobs/applying.py, db/pending_callbacks.py). Queuing a task beside each callback, as
earlier releases did, cost a second INSERT with four index entries and a foreign-key check
on this path (bench/ingest.py: the database's CPU per webhook fell from 280 to 219 us
without it). The requests of one process that arrive together share that write
(db/group_commit.py): under load most of a lone write's cost was its commit.

On PostgreSQL a batch is a single statement in autocommit mode, one round trip: the
requests come as one JSON array, and a data-modifying CTE inserts the callbacks (ON
CONFLICT DO NOTHING makes a retried body a no-op). On SQLite it is one INSERT ... SELECT over
the batch's rows, in autocommit mode too, written by a leader that holds the writers' turn
across processes (WriterTurns). Either way
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
import functools
import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from service.db.group_commit import GroupCommit
from service.db.types import utcnow
from service.errors import NotFound
from service.providers.endpoints import ENDPOINTS

SOURCE = "webhook"


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


# The literal 'webhook' is SOURCE (a test checks it).
# One statement for a whole batch (db/group_commit.py): element n of the JSON is request n.
_POSTGRES = """
WITH input AS (
    -- body and result come as JSON texts inside the batch, cast back below: a field read
    -- as json here would be unescaped on the way, and an escaped NUL (valid JSON, which a
    -- provider may send) cannot be unescaped into PostgreSQL text.
    SELECT * FROM json_to_recordset(CAST(%(batch)s AS json)) AS i(
        n int, track_id text, provider text, status text, body text, result text,
        body_sha256 text
    )
), job AS (
    -- LATERAL ... LIMIT 1 and the scalar subquery below are index lookups whatever the
    -- planner believes: psycopg prepares this statement, and the generic plan cannot know
    -- the batch holds a handful of rows (it assumes 100), which made a freshly loaded jobs
    -- table look cheaper to hash than to probe: a sequential scan per webhook.
    SELECT input.n, found.id, input.status, input.body, input.result, input.body_sha256
    FROM input
    CROSS JOIN LATERAL (
        SELECT jobs.id FROM jobs
        WHERE jobs.track_id = input.track_id
          -- A track_id only answers to the provider its job was sent to.
          AND CAST(%(providers)s AS json) ->> jobs.endpoint = input.provider
        LIMIT 1
    ) AS found
), stored AS (
    INSERT INTO callbacks (job_id, source, status, body, result, body_sha256, received_at,
                           pending)
    SELECT id, 'webhook', status, CAST(body AS json), CAST(result AS json), body_sha256,
           %(now)s, true
    FROM job
    -- A known duplicate is not even attempted: a speculative insert writes WAL, and WAL
    -- means a flush at commit, which made duplicates cost as much as new callbacks.
    WHERE (
        SELECT 1 FROM callbacks c
        WHERE c.job_id = job.id AND c.source = 'webhook' AND c.body_sha256 = job.body_sha256
        LIMIT 1
    ) IS NULL
    ON CONFLICT (job_id, source, body_sha256) DO NOTHING
    RETURNING id, job_id, body_sha256
)
-- The CTE runs whatever this reads; per request: whether its job exists (an unknown
-- track_id is not a duplicate) and its new callback's id, if there is one.
SELECT input.n, job.id IS NOT NULL, stored.id
FROM input
LEFT JOIN job ON job.n = input.n
LEFT JOIN stored ON stored.job_id = job.id AND stored.body_sha256 = job.body_sha256
ORDER BY input.n
"""

# One statement for a whole batch, in autocommit: the statement is its own transaction (see
# _write_sqlite for why). input.column1..5 are VALUES' own names for its columns: track_id,
# status, body, result, body_sha256. The job is looked up (a track_id only answers to the
# provider its job was sent to: the endpoints are the provider's, literals made below), and
# the row stored, pending, unless the same body was. WHERE true is SQLite's: an upsert's
# SELECT must have a WHERE clause, or ON CONFLICT would read as part of the join.
#
# No RETURNING: the statement's row count says whether every callback went in (the common
# case), and only when some did not are the ones that did read back (_SQLITE_STORED). With
# RETURNING, each row back was another call into SQLite, each giving up the interpreter's
# lock while the writers' turn was held; without it the statement takes SQLite's write lock,
# writes and commits in one call (bench/ingest_ab.py: 1.02x of the RETURNING version; 41
# against 47 us of CPU a lone callback in process).
_SQLITE_STORE = """
INSERT INTO callbacks (job_id, source, status, body, result, body_sha256, received_at, pending)
SELECT jobs.id, 'webhook', input.column2, input.column3, input.column4, input.column5, ?, 1
FROM (VALUES {rows}) AS input
JOIN jobs ON jobs.track_id = input.column1 AND jobs.endpoint IN ({endpoints})
WHERE true
ON CONFLICT (job_id, source, body_sha256) DO NOTHING
"""
# The same for a batch of one, the most common batch: a plain SELECT from jobs,
# without the VALUES list and its join (24 against 28 us a callback in process). Numbered
# parameters keep the order of _SQLITE_STORE's: now, then track_id, status, body, result,
# body_sha256.
_SQLITE_STORE_ONE = """
INSERT INTO callbacks (job_id, source, status, body, result, body_sha256, received_at, pending)
SELECT jobs.id, 'webhook', ?3, ?4, ?5, ?6, ?1, 1
FROM jobs
WHERE jobs.track_id = ?2 AND jobs.endpoint IN ({endpoints})
ON CONFLICT (job_id, source, body_sha256) DO NOTHING
"""
# The callbacks one statement stored, when not all went in: the writers take turns, so the
# ids it gave are consecutive, up to the connection's last rowid.
_SQLITE_STORED = """
SELECT jobs.track_id, callbacks.body_sha256
FROM callbacks JOIN jobs ON jobs.id = callbacks.job_id
WHERE callbacks.id > ? AND callbacks.id <= ?
"""
# A request whose callback was not stored: an unknown track_id, or a duplicate.
_SQLITE_WHICH = "SELECT endpoint FROM jobs WHERE track_id = ?"


# Which provider each endpoint belongs to: PostgreSQL's statement looks it up in the JSON.
_PROVIDER_OF = {name: spec.provider for name, spec in ENDPOINTS.items()}
_PROVIDERS_JSON = json.dumps(_PROVIDER_OF)
# Endpoint names are ours (providers/endpoints.py), written as SQL literals: plain ones only.
assert all(re.fullmatch(r"[a-z0-9/_.-]+", name) for name in _PROVIDER_OF), "an endpoint name"
_ENDPOINTS_OF: dict[str, str] = {
    provider: ", ".join(f"'{name}'" for name, of in _PROVIDER_OF.items() if of == provider)
    for provider in set(_PROVIDER_OF.values())
}


@functools.cache
def _sqlite_store(provider: str, count: int) -> str | None:
    """The statement that stores ``count`` callbacks to ``provider`` (_SQLITE_STORE, or
    _SQLITE_STORE_ONE for one); None for a provider we lack."""
    endpoints = _ENDPOINTS_OF.get(provider)
    if endpoints is None:
        return None
    if count == 1:
        return _SQLITE_STORE_ONE.format(endpoints=endpoints)
    return _SQLITE_STORE.format(rows=", ".join(["(?, ?, ?, ?, ?)"] * count), endpoints=endpoints)


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

    def turn(self) -> WriterTurns:
        """The writers' turn, as a context manager (this object: one holder at a time)."""
        return self

    def __enter__(self) -> None:
        # A class, not a @contextmanager generator: this runs once a batch, on the path every
        # webhook takes, and a generator's setup and teardown cost more than the lock itself.
        self._threads.acquire()
        if self._path is None:
            return
        try:
            if self._pid != os.getpid():
                # A descriptor inherited through fork shares its lock with the parent: reopen.
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._path is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


@dataclass(slots=True)
class _Callback:
    """One request's callback, as the batch statement takes it: body and result as JSON
    text, made by the request's own thread, not by the leader while others wait."""

    provider: str
    track_id: str
    status: str
    body: str
    result: str
    body_sha256: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.track_id, self.body_sha256)


# What the write says of one callback: is its job known, and was it stored (not a duplicate).
_Written = tuple[bool, bool]


@dataclass
class WebhookIngest:
    """Records callbacks for the webhook view, the requests of one process group-committed.

    ``engine`` is this writer's own: on PostgreSQL made with AUTOCOMMIT and without pool
    pre-ping (a dropped connection is retried once instead, saving a round trip a request).
    psycopg prepares the statement on each connection after its fifth use: planning these
    CTEs costs five times more than running them. Requests that arrive while a write is in
    flight share the next one (db/group_commit.py): each still answers only after its own
    row committed, and the commit's round trip and WAL flush are paid once per batch.
    """

    engine: Engine
    on_queued: Callable[[], None] = lambda: None
    turns: WriterTurns = field(init=False, repr=False)
    _batches: GroupCommit[_Callback, _Written] = field(init=False, repr=False)
    # The leader's connection and cursor, held between batches: only one batch is written
    # at a time (the leader's), so one of each serves. A pool checkout and return per batch
    # cost 3% of a webhook's CPU under load, a new psycopg cursor per write 30 us.
    _raw: Any = field(init=False, default=None, repr=False)
    _cursor: Any = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.turns = WriterTurns(
            self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        )
        # On SQLite the leader takes its batch once the writers of every process let it
        # write: what arrives meanwhile joins it (batches of 1.2-1.7 callbacks under
        # bench/ingest.py's load before, when it took the batch first and then waited).
        self._batches = GroupCommit(self._write, turn=self.turns.turn)

    def record(self, provider: str, track_id: str, values: dict[str, Any]) -> Outcome:
        """Keep the callback and queue its application; NotFound for an unknown track_id.

        ``values`` are the callback row's status, body (redacted), result and body_sha256.
        """
        callback = _Callback(
            provider,
            track_id,
            values["status"],
            json.dumps(values["body"]),
            json.dumps(values["result"]),
            values["body_sha256"],
        )
        known, stored = self._batches.submit(callback)
        if not known:
            raise NotFound("unknown track_id")
        if not stored:
            return Outcome.DUPLICATE
        self.on_queued()
        return Outcome.ACCEPTED

    def _write(self, batch: Sequence[_Callback]) -> list[_Written]:
        if len(batch) == 1:  # the usual batch: nothing to collapse
            return self._write_unique(batch)
        # The same body twice in one batch (a provider's quick retry): written once, and
        # the later ones answered as duplicates of it.
        first: dict[tuple[str, str, str], int] = {}
        unique: list[_Callback] = []
        for callback in batch:
            if callback.key not in first:
                first[callback.key] = len(unique)
                unique.append(callback)
        written = self._write_unique(unique)
        out: list[_Written] = []
        seen: set[tuple[str, str, str]] = set()
        for callback in batch:
            known, stored = written[first[callback.key]]
            out.append((known, stored and callback.key not in seen))
            seen.add(callback.key)
        return out

    def _write_unique(self, batch: Sequence[_Callback]) -> list[_Written]:
        postgres = self.engine.dialect.name == "postgresql"
        for attempt in (1, 2):
            if self._raw is None:
                # The pool's DBAPI connection itself: a SQLAlchemy Connection around it
                # costs about 75 us a batch more.
                self._raw = self.engine.raw_connection()
                self._cursor = self._raw.dbapi_connection.cursor()
                if not postgres:
                    _own_sqlite_connection(self._raw, self._cursor)
            try:
                if postgres:
                    return _write_postgres(self._cursor, batch)
                return _write_sqlite(self._raw.dbapi_connection, self._cursor, batch)
            except self.engine.dialect.loaded_dbapi.OperationalError:
                # On PostgreSQL most likely a connection the database dropped (a restart):
                # throw it away and try once more on a fresh one.
                self._drop(invalidate=True)
                if attempt == 2 or not postgres:
                    raise
        raise AssertionError("unreachable")

    def _drop(self, *, invalidate: bool = False) -> None:
        raw, self._raw, self._cursor = self._raw, None, None
        if raw is not None:
            # A detached one (SQLite's, _own_sqlite_connection) has no pool to be kept out
            # of, and invalidate() would leave it open: closing it closes it.
            if invalidate and not raw.is_detached:
                raw.invalidate()
            raw.close()

    def close(self) -> None:
        """Return the held connection, when the container closes (no request is left)."""
        self._drop()


def _own_sqlite_connection(raw: Any, cur: Any) -> None:
    """Make the writer's SQLite connection its own, without the foreign-key check.

    The statement finds the job by its track_id while it holds SQLite's write lock, from its
    start to its commit, so the job it names exists when the row is written. The check only
    looked the job up again, through the jobs' primary-key index: three more pages for every
    batch to read, since another process's write empties a connection's page cache (in
    process, two connections writing in turns: 60.2 against 62.6 us a statement; one
    connection alone, no difference). Detached from the pool, the connection is closed, not handed
    to another user, when the writer lets it go: the setting never leaves this writer.
    """
    raw.detach()
    cur.execute("PRAGMA foreign_keys=OFF")


def _write_postgres(cur: Any, batch: Sequence[_Callback]) -> list[_Written]:
    # The batch travels as one JSON document: psycopg dumps one string, where arrays of
    # text cost it more than the rest of the request (an escape pass per element).
    rows = [
        {
            "n": n,
            "track_id": c.track_id,
            "provider": c.provider,
            "status": c.status,
            "body": c.body,
            "result": c.result,
            "body_sha256": c.body_sha256,
        }
        for n, c in enumerate(batch)
    ]
    params = {
        "batch": json.dumps(rows),
        "providers": _PROVIDERS_JSON,
        "now": utcnow(),
    }
    # The connection is in autocommit mode: this one statement is one transaction.
    cur.execute(_POSTGRES, params)
    found = cur.fetchall()
    return [(bool(known), callback_id is not None) for _n, known, callback_id in found]


def _write_sqlite(dbapi: Any, cur: Any, batch: Sequence[_Callback]) -> list[_Written]:
    # The caller holds the writers' turn (WriterTurns, entered by GroupCommit's leader), and
    # the batch is one statement in autocommit mode: a write statement takes SQLite's write
    # lock as it starts (as BEGIN IMMEDIATE would) and commits as it ends, within one call
    # into SQLite. Every call gives up the GIL, and a leader that gives it up while holding
    # the turn waits for it back while every other process's writers wait on the turn: with
    # BEGIN IMMEDIATE, an INSERT per callback and COMMIT, the turn was held 0.63 ms on
    # average for about 70 us of work (bench/ingest_ab.py's load, in a patched copy).
    # As UTCDateTime stores it on SQLite: naive UTC, SQLAlchemy's text format.
    now = utcnow().replace(tzinfo=None).isoformat(" ", "microseconds")
    stored: set[tuple[str, str, str]] = set()
    # A statement per provider (only ModelsLab sends webhooks, so one in practice). Should a
    # later one fail, the callers of the batch are all answered with its error, and those
    # already stored are duplicates when the provider retries: nothing answered 200 is lost.
    for provider in dict.fromkeys(c.provider for c in batch):
        mine = [c for c in batch if c.provider == provider]
        statement = _sqlite_store(provider, len(mine))
        if statement is None:
            continue
        params: list[str] = [now]
        for c in mine:
            params += (c.track_id, c.status, c.body, c.result, c.body_sha256)
        try:
            cur.execute(statement, params)
        except BaseException:
            # An error rolls the statement back; an interrupted one may leave it open.
            if dbapi.in_transaction:
                cur.execute("ROLLBACK")
            raise
        count = cur.rowcount
        if count == len(mine):
            stored.update(c.key for c in mine)
        elif count > 0:
            last = cur.lastrowid
            found = cur.execute(_SQLITE_STORED, (last - count, last)).fetchall()
            stored.update((provider, track_id, digest) for track_id, digest in found)
    out: list[_Written] = []
    for c in batch:
        if c.key in stored:
            out.append((True, True))
            continue
        # Read to the end: in autocommit mode a statement left unfinished would keep its
        # read transaction open until the next batch, holding back the WAL's checkpoints.
        which = cur.execute(_SQLITE_WHICH, (c.track_id,)).fetchall()
        out.append((bool(which) and _PROVIDER_OF.get(which[0][0]) == c.provider, False))
    return out
