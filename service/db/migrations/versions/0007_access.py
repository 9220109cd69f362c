"""Projects, API keys and the audit log; every job, endpoint and event gets a project.

Everything that exists already belongs to the ``default`` project, created here. The audit
log is append-only in the database itself: triggers refuse UPDATE and DELETE on both
PostgreSQL and SQLite, so not even a bug in genvault (or an operator's stray statement
through its role) can rewrite history.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from service.db.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_PG_APPEND_ONLY = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"""

_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END",
)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("slug", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(300)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.execute(
        "INSERT INTO projects (slug, name, created_by, created_at) "
        "VALUES ('default', 'Default', 'migration 0007', CURRENT_TIMESTAMP)"
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("project", sa.String(40), sa.ForeignKey("projects.slug")),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
    )
    op.create_index("ix_api_keys_project", "api_keys", ["project"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(300), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("project", sa.String(40)),
        sa.Column("target", sa.String(200)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("remote_addr", sa.String(64)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("changes", sa.JSON()),
    )
    op.create_index("ix_audit_log_action_id", "audit_log", ["action", "id"])
    op.create_index("ix_audit_log_actor_id", "audit_log", ["actor", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_APPEND_ONLY)
    else:
        for statement in _SQLITE_APPEND_ONLY:
            op.execute(statement)

    # batch_alter_table so SQLite (which rebuilds the table to add a foreign key) works too.
    # An Idempotency-Key becomes unique within its project, not across them (another
    # project's use of a key must neither block nor reveal anything), so 0001's
    # UNIQUE(idempotency_key) goes. PostgreSQL named it; on SQLite it has no name to drop by,
    # so the table SQLite is rebuilt from is the reflected one without it.
    bind = op.get_bind()
    copy_from = None
    if bind.dialect.name == "postgresql":
        op.drop_constraint("jobs_idempotency_key_key", "jobs", type_="unique")
    else:
        copy_from = sa.Table("jobs", sa.MetaData(), autoload_with=bind)
        for constraint in list(copy_from.constraints):
            columns = [c.name for c in getattr(constraint, "columns", ())]
            if isinstance(constraint, sa.UniqueConstraint) and columns == ["idempotency_key"]:
                copy_from.constraints.remove(constraint)
    with op.batch_alter_table("jobs", copy_from=copy_from) as batch:
        batch.add_column(
            sa.Column("project", sa.String(40), nullable=False, server_default="default")
        )
        batch.create_foreign_key("fk_jobs_project", "projects", ["project"], ["slug"])
        batch.drop_index("ix_jobs_status_id")
        batch.drop_index("ix_jobs_endpoint_id")
        batch.create_index("ix_jobs_project_id", ["project", "id"])
        batch.create_index("ix_jobs_project_status_id", ["project", "status", "id"])
        batch.create_index("ix_jobs_project_endpoint_id", ["project", "endpoint", "id"])
        batch.create_unique_constraint(
            "uq_jobs_project_idempotency_key", ["project", "idempotency_key"]
        )
    with op.batch_alter_table("event_endpoints") as batch:
        batch.add_column(
            sa.Column("project", sa.String(40), nullable=False, server_default="default")
        )
        batch.create_foreign_key("fk_event_endpoints_project", "projects", ["project"], ["slug"])
        batch.create_index("ix_event_endpoints_project", ["project"])
    with op.batch_alter_table("events") as batch:
        batch.add_column(
            sa.Column("project", sa.String(40), nullable=False, server_default="default")
        )
        batch.create_index("ix_events_project_id", ["project", "id"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_project_id")
        batch.drop_column("project")
    with op.batch_alter_table("event_endpoints") as batch:
        batch.drop_index("ix_event_endpoints_project")
        batch.drop_constraint("fk_event_endpoints_project", type_="foreignkey")
        batch.drop_column("project")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_project_idempotency_key", type_="unique")
        batch.create_unique_constraint("jobs_idempotency_key_key", ["idempotency_key"])
        batch.drop_index("ix_jobs_project_endpoint_id")
        batch.drop_index("ix_jobs_project_status_id")
        batch.drop_index("ix_jobs_project_id")
        batch.create_index("ix_jobs_status_id", ["status", "id"])
        batch.create_index("ix_jobs_endpoint_id", ["endpoint", "id"])
        batch.drop_constraint("fk_jobs_project", type_="foreignkey")
        batch.drop_column("project")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.drop_table("audit_log")
    op.drop_table("api_keys")
    op.drop_table("projects")
