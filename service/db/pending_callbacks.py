"""Where the worker finds the webhook callbacks it has yet to apply, per database.

A webhook stores its callback with ``pending`` true (jobs/ingest.py); the worker applies it
and clears the flag (jobs/applying.py). Finding the pending ones must not cost more as the
table grows, and must not cost the webhook's write more than it has to.

- PostgreSQL: the partial index ``ix_callbacks_pending`` (migration 0011) holds only the
  pending rows. Its ids come from a sequence, taken before commit, so a row with a lower id
  can commit after one with a higher: nothing simpler would be safe.
- SQLite: no index (migration 0012). Its writers take turns, so a new row's id is one more
  than the highest id committed before it: every callback at or below a *floor* has been
  applied, and pending ones are found by reading the few rows above it, by rowid. The
  index's entry was a page of the write-ahead log on every webhook commit, about a third of
  what it wrote (bench/ingest_write.py: 3.58 pages a lone callback with it, 2.5 without).
  The floor is one row of ``callbacks_floor``, outside SQLAlchemy's models (like the search
  tables). The worker's intake moves it up in its own transaction (``ADVANCE``). Deleting
  the highest callbacks (an erasure, retention) would let SQLite give their ids again, to
  new rows below the floor: the trigger ``callbacks_floor_delete`` lowers the floor then.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, column, select, table, text
from sqlalchemy.orm import Session

from service.db.models import Callback

SQLITE_TABLE = "callbacks_floor"
SQLITE_TRIGGER = "callbacks_floor_delete"

# Every callback with a lower or equal id has been applied (or was never pending).
_FLOOR = table(SQLITE_TABLE, column("id"))

SQLITE_SCHEMA = (
    "CREATE TABLE callbacks_floor (id INTEGER NOT NULL)",
    # Where an existing table stands: below its oldest pending callback, else at its top.
    "INSERT INTO callbacks_floor (id) VALUES (coalesce("
    "(SELECT min(id) - 1 FROM callbacks WHERE pending), (SELECT max(id) FROM callbacks), 0))",
    # Fires only when the deleted row was the highest (none above it is left): SQLite's next
    # id is then the highest remaining plus one, which must lie above the floor.
    "CREATE TRIGGER callbacks_floor_delete AFTER DELETE ON callbacks"
    " WHEN old.id > coalesce((SELECT max(id) FROM callbacks), 0)"
    " BEGIN UPDATE callbacks_floor SET id = min(id, coalesce((SELECT max(id) FROM callbacks), 0));"
    " END",
)

# Up to the row below the lowest callback still pending, or to the top when none is: run in
# a write transaction, where no callback can commit meanwhile.
_ADVANCE = text(
    "UPDATE callbacks_floor SET id = coalesce("
    "(SELECT min(c.id) - 1 FROM callbacks AS c WHERE c.id > callbacks_floor.id AND c.pending),"
    " (SELECT max(c.id) FROM callbacks AS c), id)"
)

# How far the top may run ahead of the floor before a pass with nothing pending moves it:
# callbacks that were never pending (submit and poll answers) are read past until then.
LAG = 256


def uses_floor(dialect: str) -> bool:
    return dialect == "sqlite"


def pending(dialect: str) -> ColumnElement[bool]:
    """A WHERE clause on ``callbacks``: the callback waits for the worker."""
    if uses_floor(dialect):
        return and_(Callback.id > select(_FLOOR.c.id).scalar_subquery(), Callback.pending)
    # The bare column, as the index's predicate says it: PostgreSQL does not prove that
    # "pending IS true" implies "pending", and reads the whole table for it.
    return and_(Callback.pending)


def lag(conn: Connection) -> int:
    """How many ids the top of the table is above the floor (0 on PostgreSQL)."""
    if not uses_floor(conn.dialect.name):
        return 0
    top, floor = conn.execute(
        select(
            select(Callback.id).order_by(Callback.id.desc()).limit(1).scalar_subquery(),
            select(_FLOOR.c.id).scalar_subquery(),
        )
    ).one()
    return (top or 0) - (floor or 0)


def advance(session: Session) -> None:
    """Move the floor up to the lowest pending callback; inside a write transaction."""
    if uses_floor(session.get_bind().dialect.name):
        session.execute(_ADVANCE)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """For alembic's comparison: the floor's table is not in the models."""
    return not (type_ == "table" and name == SQLITE_TABLE)
