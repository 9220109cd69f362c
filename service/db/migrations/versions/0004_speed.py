"""Wake workers the moment a task is queued: a NOTIFY trigger on tasks (PostgreSQL).

The trigger runs inside the transaction that queues the task, so the notification goes out
exactly when that transaction commits (and never if it rolls back); PostgreSQL folds
identical notifications of one transaction into one. SQLite needs nothing here: its
workers are woken after the commit by tasks/wakeup.py.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None

# Keep in step with service/tasks/wakeup.py CHANNEL.
CHANNEL = "genvault_tasks"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION genvault_notify_task() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER tasks_notify
        AFTER INSERT OR UPDATE OF status ON tasks
        FOR EACH ROW WHEN (NEW.status = 'queued')
        EXECUTE FUNCTION genvault_notify_task()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS tasks_notify ON tasks")
    op.execute("DROP FUNCTION IF EXISTS genvault_notify_task()")
