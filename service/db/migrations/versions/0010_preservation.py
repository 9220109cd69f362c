"""Preservation: each asset's Content Credentials (C2PA) as read at archive time, and the
moment a job was erased.

``assets.content_credentials`` holds ``{present, valid, claim_generator,
digital_source_type}`` (the manifest carries the same on each asset); rows of earlier
releases have none (NULL: not read). ``jobs.deleted_at`` is set when a job is erased
(``DELETE /v1/jobs/{id}``); its status reads ``deleted`` from then on. Both are plain
``ADD COLUMN``s, so SQLite does not rebuild ``jobs`` and its FTS triggers (0009) stay.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from service.db.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("assets", sa.Column("content_credentials", sa.JSON()))
    op.add_column("jobs", sa.Column("deleted_at", UTCDateTime()))


def downgrade() -> None:
    # SQLite 3.35+ drops a column in place; the FTS triggers (0009) name neither column.
    op.drop_column("jobs", "deleted_at")
    op.drop_column("assets", "content_credentials")
