"""Webhook callbacks wait for the worker as rows of their own, without a task each.

``callbacks.pending`` is true for a webhook callback the worker has not applied to its job
yet (jobs/applying.py); the partial index ``ix_callbacks_pending`` holds only those, so
finding them costs the same at any size. The webhook used to queue a ``callback`` task
beside each callback: a second INSERT with four index entries and a foreign-key check, on
the path a provider waits on. Rows of earlier releases read false (their tasks apply them),
and the column comes with a constant default: no table rewrite on either database.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "callbacks", sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_index(
        "ix_callbacks_pending",
        "callbacks",
        ["id"],
        postgresql_where=sa.text("pending"),
        sqlite_where=sa.text("pending"),
    )


def downgrade() -> None:
    # Whatever is still pending gets the task it had before this revision.
    op.execute(
        "INSERT INTO tasks (kind, job_id, payload, status, attempts, max_attempts,"
        " run_after, created_at, updated_at)"
        " SELECT 'callback', job_id, json_object('callback_id', id), 'queued', 0, 10,"
        " received_at, received_at, received_at FROM callbacks WHERE pending"
        if op.get_bind().dialect.name == "sqlite"
        else "INSERT INTO tasks (kind, job_id, payload, status, attempts, max_attempts,"
        " run_after, created_at, updated_at)"
        " SELECT 'callback', job_id, json_build_object('callback_id', id), 'queued', 0, 10,"
        " received_at, received_at, received_at FROM callbacks WHERE pending"
    )
    op.drop_index("ix_callbacks_pending", table_name="callbacks")
    # SQLite 3.35+ drops a column in place, once no index names it.
    op.drop_column("callbacks", "pending")
