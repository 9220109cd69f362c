"""Submission attempts on jobs: a provider is never called twice without knowing it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from service.db.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table so SQLite, which cannot add columns with every option, works too.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("submit_attempted_at", UTCDateTime()))
        batch.add_column(
            sa.Column("submit_attempts", sa.Integer(), nullable=False, server_default="0")
        )
    # A job left `submitted` with no provider id was mid-call when its worker stopped: the
    # provider may have it, so it counts as an attempt without an answer, not as unsent.
    op.execute(
        "UPDATE jobs SET submit_attempted_at = submitted_at, submit_attempts = 1 "
        "WHERE status = 'submitted' AND provider_request_id IS NULL AND fetch_url IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("submit_attempts")
        batch.drop_column("submit_attempted_at")
