"""The worker's half of a webhook: apply a stored callback to its job (the state machine).

The webhook request only stored the callback and queued a ``callback`` task for it
(jobs/ingest.py); this handler does what the request used to do inline: lock the job, move
it on through records.advance()/fail() (results.apply), and queue the archive on success.
Running it twice is harmless: advance() refuses a move the job has already made, and the
archive task is deduplicated per job.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.db.session import Database
from service.errors import PermanentError
from service.jobs import records, results
from service.tasks.queue import ClaimedTask, TaskQueue


@dataclass
class CallbackApplier:
    db: Database
    queue: TaskQueue
    timing: results.PollTiming

    def __call__(self, task: ClaimedTask) -> None:
        callback_id = task.payload.get("callback_id")
        if not isinstance(callback_id, int):
            raise PermanentError("callback task without a callback_id")
        with self.db.transaction() as session:
            callback = records.callback(session, callback_id)
            if callback is None:
                raise PermanentError(f"callback {callback_id} is gone")
            job = records.get_job(session, callback.job_id, for_update=True)
            answer = results.result_from_json(callback.result)
            results.apply(session, self.queue, job, answer, callback.id, timing=self.timing)
