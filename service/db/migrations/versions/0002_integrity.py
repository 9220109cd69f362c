"""Jobs record the SHA-256 of their manifest, so audit can tell a rewritten manifest.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: jobs archived before this revision have no recorded digest.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("manifest_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("manifest_sha256")
