"""Drop three indexes that a composite index already serves: writes maintain fewer.

Every webhook inserts a callback, and every state change updates a job's status; each index
on those columns is one more page to change. ``ix_callbacks_job_id`` is the leading column
of ``uq_callbacks_body`` (job_id, source, body_sha256); ``ix_jobs_status`` and
``ix_jobs_endpoint`` lead ``ix_jobs_status_id`` and ``ix_jobs_endpoint_id``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_callbacks_job_id", table_name="callbacks")
    op.drop_index("ix_jobs_status", table_name="jobs")
    op.drop_index("ix_jobs_endpoint", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_endpoint", "jobs", ["endpoint"])
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_callbacks_job_id", "callbacks", ["job_id"])
