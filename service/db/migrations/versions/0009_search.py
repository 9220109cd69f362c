"""The gallery's ``q`` answered from an index: words in a job's prompt or metadata values.

PostgreSQL: a GIN index over a ``tsvector`` expression (the ``simple`` configuration, so
every language is split into words the same way and nothing is stemmed or dropped as a stop
word): the prompt (``params->>'prompt'``) and every string and number in the metadata. The
query repeats the expression exactly (``service.db.search``), so the planner reads the index.
Built-in full-text search needs no extension, so no superuser either.

SQLite: an FTS5 table ``jobs_fts`` (``job_id``, ``body``) kept in step with ``jobs`` by
triggers on insert, on an update of ``params`` or ``metadata``, and on delete. ``job_id`` is
an indexed column so the triggers find a job's row by MATCH instead of scanning; searches
match ``body`` only. Existing jobs are indexed here.

FTS5 tables live outside SQLAlchemy's metadata: ``service.db.search.include_name`` tells
alembic's comparison to leave them (and their shadow tables) alone.

A SQLite table rebuild of ``jobs`` (``batch_alter_table`` in a later migration) drops the
triggers with the old table: such a migration must call ``create_sqlite_triggers`` again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from alembic import op

from service.db import search

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE INDEX {search.PG_INDEX} ON jobs USING gin ({search.PG_VECTOR})")
        return
    op.execute(search.SQLITE_TABLE)
    for statement in search.SQLITE_TRIGGERS:
        op.execute(statement)
    op.execute(search.SQLITE_BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX {search.PG_INDEX}")
        return
    for trigger in search.SQLITE_TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS jobs_fts")
