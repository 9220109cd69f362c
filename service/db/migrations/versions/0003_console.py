"""Dashboard indexes: gallery filters page by the time-ordered job id.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # /ui/ lists newest first (ORDER BY id DESC) under a status or endpoint filter; these let
    # a page be read straight off an index instead of sorting every matching row.
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.create_index("ix_jobs_endpoint_id", "jobs", ["endpoint", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_endpoint_id", table_name="jobs")
    op.drop_index("ix_jobs_status_id", table_name="jobs")
