"""Queue gauges, read from the database when /metrics is scraped."""

from __future__ import annotations

from sqlalchemy import func, select

from service import metrics
from service.db import pending_callbacks
from service.db.models import Callback, Task
from service.db.session import Database
from service.db.types import utcnow
from service.tasks.kinds import TaskKind
from service.tasks.status import TaskStatus


def refresh(db: Database) -> None:
    """Depth and age of the due part of the queue, per kind (0 for a kind with none)."""
    now = utcnow()
    with db.transaction() as session:
        rows = session.execute(
            select(Task.kind, func.count(), func.min(Task.run_after))
            .where(Task.status == TaskStatus.QUEUED.value, Task.run_after <= now)
            .group_by(Task.kind)
        ).all()
        # Webhook callbacks wait as rows of their own (jobs/applying.py): the ``callback``
        # kind counts them with any callback tasks, so alerts on queue age see them.
        pending, received = session.execute(
            select(func.count(), func.min(Callback.received_at)).where(
                pending_callbacks.pending(session.get_bind().dialect.name)
            )
        ).one()
    found = {str(kind): (count, oldest) for kind, count, oldest in rows}
    if pending:
        count, oldest = found.get(TaskKind.CALLBACK.value, (0, None))
        found[TaskKind.CALLBACK.value] = (count + pending, min(filter(None, (oldest, received))))
    for kind in TaskKind:
        count, oldest = found.get(kind.value, (0, None))
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        metrics.TASKS_QUEUED.labels(kind.value).set(count)
        metrics.TASK_OLDEST_QUEUED_SECONDS.labels(kind.value).set(age)
