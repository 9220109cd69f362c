"""Endpoint types: an endpoint may be a queue or broker (SQS, SNS, EventBridge, RabbitMQ,
NATS, Redis) with its config, sealed credentials, body format and link style.

Every existing endpoint becomes ``http`` with the standard format and fresh links, exactly as
it behaved before; ``url`` may now be empty, as only ``http`` endpoints have one.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch_alter_table: SQLite rebuilds the table to drop url's NOT NULL.
    with op.batch_alter_table("event_endpoints") as batch:
        batch.alter_column("url", existing_type=sa.Text(), nullable=True)
        batch.add_column(sa.Column("type", sa.String(20), nullable=False, server_default="http"))
        batch.add_column(sa.Column("config", sa.JSON()))
        batch.add_column(sa.Column("credentials", sa.Text()))
        batch.add_column(
            sa.Column("format", sa.String(20), nullable=False, server_default="standard")
        )
        batch.add_column(sa.Column("links", sa.String(20), nullable=False, server_default="fresh"))
        batch.add_column(
            sa.Column("config_failures", sa.Integer(), nullable=False, server_default="0")
        )
    op.add_column("event_delivery_attempts", sa.Column("receipt", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("event_delivery_attempts") as batch:
        batch.drop_column("receipt")
    # Endpoints of other types cannot exist without them.
    op.execute(
        "DELETE FROM event_delivery_attempts WHERE delivery_id IN (SELECT d.id FROM "
        "event_deliveries d JOIN event_endpoints e ON e.id = d.endpoint_id "
        "WHERE e.type <> 'http')"
    )
    op.execute(
        "DELETE FROM event_deliveries WHERE endpoint_id IN "
        "(SELECT id FROM event_endpoints WHERE type <> 'http')"
    )
    op.execute("DELETE FROM event_endpoints WHERE type <> 'http'")
    with op.batch_alter_table("event_endpoints") as batch:
        batch.drop_column("config_failures")
        batch.drop_column("links")
        batch.drop_column("format")
        batch.drop_column("credentials")
        batch.drop_column("config")
        batch.drop_column("type")
        batch.alter_column("url", existing_type=sa.Text(), nullable=False)
