"""What a task that will not be retried means for its job: the job fails, with the reason."""

from __future__ import annotations

from service.db.session import Database
from service.jobs import records
from service.tasks.kinds import TaskKind
from service.tasks.queue import ClaimedTask


class GiveUp:
    """The worker's ``on_give_up``: fail the task's job unless it is settled already."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def __call__(self, task: ClaimedTask, error: BaseException) -> None:
        if task.job_id is None:
            return
        code = getattr(error, "code", "failed")
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        if task.kind is TaskKind.POLL:
            # Polls run out only when the provider keeps saying "processing".
            code, message = "timeout", f"the provider never reported a result ({message})"
        with self.db.transaction() as session:
            records.fail(records.get_job(session, task.job_id, for_update=True), code, message)
