"""`genvault db copy --to URL`: every row of every table into an empty, migrated database.

The way up from SQLite to PostgreSQL (README "Operations"). The tables are the models'
(``Base.metadata.sorted_tables``, parents before children), so a table added later is copied
without a change here. Primary keys are kept; on PostgreSQL the sequences of integer ids are
set past the copied rows afterwards. Rows that only triggers or expression indexes derive
(SQLite's ``jobs_fts``, PostgreSQL's search index) are rebuilt by the target as rows arrive.

The source is read in one transaction (a consistent snapshot); the target is written one
batch per transaction. A copy that stops half-way leaves a target that is no longer empty:
start again on a freshly migrated database.

Every row is copied as it is but one thing: a task's lease. A task still ``running`` was
claimed by a worker of the source database (one killed, say, rather than stopped), and no
worker of the target holds it or could renew it there; left as it was, the job would wait
up to a whole lease (``GENVAULT_WORKER_LEASE_SECONDS``) for it to run out. Its lease ends
when the copy starts instead, so the target's workers take it over at once, exactly as they
take over the task of a worker whose lease ran out (its attempt counted when it starts, a
submission that may have been sent treated as uncertain).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, Table, delete, func, select, text

from service.db.enums import TaskStatus
from service.db.models import DEFAULT_PROJECT, Base, Task
from service.db.session import READ_ONLY
from service.db.types import utcnow
from service.errors import GenvaultError

BATCH = 1000


class CopyRefused(GenvaultError):
    """The target database is not an empty database at the source's revision."""


class CountMismatch(GenvaultError):
    """The target does not hold as many rows as the source after the copy."""


@dataclass(frozen=True)
class TableCount:
    table: str
    source: int
    target: int


def revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _seeded(table: Table, conn: Connection) -> bool:
    """Whether the table holds only what the migrations themselves insert (the default project)."""
    if table.name != "projects":
        return False
    slugs = list(conn.execute(select(table.c.slug).limit(2)).scalars())
    return slugs == [DEFAULT_PROJECT]


def check_target(source: Connection, target: Connection) -> None:
    """Refuse, with what to do, a target at another revision or holding any row."""
    want, have = revision(source), revision(target)
    if have != want:
        raise CopyRefused(
            f"the target database is at revision {have or 'none'}, the source at {want}: "
            "run `genvault migrate` with GENVAULT_DATABASE_URL set to the target first "
            "(both at the same genvault version)"
        )
    for table in Base.metadata.sorted_tables:
        if target.execute(select(table).limit(1)).first() is not None and not _seeded(
            table, target
        ):
            raise CopyRefused(
                f"the target database is not empty (table {table.name} has rows); "
                "copy only into a freshly migrated, empty database"
            )


def copy_database(
    source_engine: Engine,
    target_engine: Engine,
    *,
    batch: int = BATCH,
    progress: Callable[[str, int], None] = lambda _table, _rows: None,
) -> list[TableCount]:
    """Copy every row; the counts per table, checked equal (CountMismatch otherwise)."""
    started = utcnow()
    options: dict[str, object] = {READ_ONLY: True}  # SQLite: a deferred, snapshot read
    if source_engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"  # one snapshot across every table
    with source_engine.connect() as raw, raw.execution_options(**options).begin():
        source = raw
        with target_engine.connect() as target:
            check_target(source, target)
            target.rollback()
        counts = []
        for table in Base.metadata.sorted_tables:
            copied = _copy_table(source, target_engine, table, batch, progress, started)
            counts.append(TableCount(table.name, _count(source, table), copied))
    if target_engine.dialect.name == "postgresql":
        _reset_sequences(target_engine)
    with target_engine.connect() as target:
        counts = [TableCount(c.table, c.source, _count(target, _table(c.table))) for c in counts]
    wrong = [c for c in counts if c.source != c.target]
    if wrong:
        listed = ", ".join(f"{c.table} {c.source} → {c.target}" for c in wrong)
        raise CountMismatch(f"row counts differ after the copy: {listed}")
    return counts


def _table(name: str) -> Table:
    return Base.metadata.tables[name]


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _copy_table(
    source: Connection,
    target_engine: Engine,
    table: Table,
    batch: int,
    progress: Callable[[str, int], None],
    started: datetime,
) -> int:
    (key,) = table.primary_key.columns  # every table has a one-column primary key
    if table.name == "projects":
        with target_engine.begin() as target:
            # The migrations' own default project makes way for the source's.
            target.execute(delete(table).where(table.c.slug == DEFAULT_PROJECT))
    copied = 0
    query = select(table).order_by(key).limit(batch)
    while rows := [dict(row._mapping) for row in source.execute(query)]:
        if table is Task.__table__:
            rows = [_lease_ended(row, started) for row in rows]
        with target_engine.begin() as target:
            target.execute(table.insert(), rows)
        copied += len(rows)
        progress(table.name, copied)
        query = select(table).order_by(key).limit(batch).where(key > rows[-1][key.name])
    return copied


def _lease_ended(task: dict[str, Any], at: datetime) -> dict[str, Any]:
    """The task with a lease of the source's workers ended at ``at`` (see the docstring)."""
    until = task["locked_until"]
    if task["status"] == TaskStatus.RUNNING and until is not None and until > at:
        return {**task, "locked_until": at}
    return task


def _reset_sequences(engine: Engine) -> None:
    """Past the copied ids, so the next insert does not collide with a copied row."""
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            (key,) = table.primary_key.columns
            # NULL for a column without a sequence (the text ids).
            sequence = conn.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": key.name}
            ).scalar_one()
            if sequence is None:
                continue
            # Names from the models, not from input.
            conn.execute(
                text(
                    f'SELECT setval(:s, COALESCE(MAX("{key.name}"), 1), '  # noqa: S608
                    f'MAX("{key.name}") IS NOT NULL) FROM "{table.name}"'
                ),
                {"s": sequence},
            )
