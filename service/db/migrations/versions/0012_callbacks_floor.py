"""SQLite finds pending callbacks above a floor instead of in an index.

The partial index ``ix_callbacks_pending`` (0011) cost every webhook commit on SQLite a page
of the write-ahead log. On SQLite it goes, and the table ``callbacks_floor`` with its delete
trigger comes instead (service/db/pending_callbacks.py says why that is safe there and not on
PostgreSQL, which keeps the index). The floor starts below the oldest pending callback.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from service.db import pending_callbacks

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_callbacks_pending", table_name="callbacks")
    for statement in pending_callbacks.SQLITE_SCHEMA:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"DROP TRIGGER IF EXISTS {pending_callbacks.SQLITE_TRIGGER}")
    op.execute(f"DROP TABLE IF EXISTS {pending_callbacks.SQLITE_TABLE}")
    op.create_index("ix_callbacks_pending", "callbacks", ["id"], sqlite_where=sa.text("pending"))
