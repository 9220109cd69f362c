"""An operator's retry of a failed job: what it would do (``retry_plan``), and doing it.

A failed job is retried one of two ways:

- **archive again**, when the provider delivered a result (the archive failed): the same
  result, already stored objects kept;
- **resubmit**, a new generation with the same ``track_id``, when this job's outcome with
  the provider is known and there is nothing to archive: it never reached the provider (or
  was refused), or the provider answered that the generation failed ("Failed, Try Again").

Anything else is refused: a job the provider accepted without ever saying how it ended, or
whose last submission has no recorded answer, may still be generating (and be paid for), and
a resubmission could pay twice. Those get a new job instead.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Callback, Job
from service.db.session import Database
from service.db.types import utcnow
from service.errors import Conflict
from service.jobs import records
from service.jobs.states import JobStatus, retry_target
from service.providers.base import ResultStatus
from service.tasks.kinds import TaskKind
from service.tasks.queue import TaskQueue

ACCEPTED_NO_RESULT = "the provider accepted this job but never delivered a result; submit a new job"
UNANSWERED = (
    "the provider may have received this job, but no answer to its last submission was "
    "recorded; resubmitting could pay twice: submit a new job"
)


class RetryAction(enum.StrEnum):
    REARCHIVE = "rearchive"
    RESUBMIT = "resubmit"

    @classmethod
    def named(cls, name: str | None) -> RetryAction | None:
        """The action of this name; None for no name or an unknown one."""
        return next((action for action in cls if action.value == name), None)


_LABELS = {
    RetryAction.REARCHIVE: "Archive again",
    RetryAction.RESUBMIT: "Resubmit to the provider (a new generation)",
}
_DONE = {
    RetryAction.REARCHIVE: "The provider's result is archived again.",
    RetryAction.RESUBMIT: "It goes to the provider again, as a new generation.",
}


@dataclass(frozen=True)
class RetryPlan:
    """What a retry of a failed job would do, and why that is safe."""

    action: RetryAction
    reason: str

    @property
    def target(self) -> JobStatus:
        """The state the retry puts the job in."""
        found = retry_target(JobStatus.FAILED, has_result=self.action is RetryAction.REARCHIVE)
        assert found is not None
        return found

    @property
    def label(self) -> str:
        """The button's words: what pressing it does."""
        return _LABELS[self.action]

    @property
    def done(self) -> str:
        """What is being done, as a sentence for the message after the retry."""
        return _DONE[self.action]


@dataclass(frozen=True)
class RetryRefusal:
    """Why a job cannot be retried."""

    reason: str


@dataclass(frozen=True)
class Answer:
    """What the plan needs of one stored provider answer (a callbacks row)."""

    id: int
    status: str
    request_id: str | None


def answers(callbacks: Iterable[Callback]) -> list[Answer]:
    """Loaded callbacks rows as the rule reads them, newest first."""
    return [
        Answer(cb.id, cb.status, _text(cb.result.get("request_id")))
        for cb in sorted(callbacks, key=lambda cb: cb.id, reverse=True)
    ]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def retry_plan(session: Session, job: Job) -> RetryPlan | None:
    """What a retry of ``job`` would do; None when it cannot be retried (see ``assess``)."""
    found = assess(session, job)
    return found if isinstance(found, RetryPlan) else None


def assess(session: Session, job: Job) -> RetryPlan | RetryRefusal:
    """The retry plan for ``job``, or the reason there is none. Reads, changes nothing."""
    if job.status is not JobStatus.FAILED:
        return RetryRefusal(f"only a failed job can be retried; this one is {job.status}")
    rows = session.execute(
        select(Callback.id, Callback.status, Callback.result["request_id"].as_string())
        .where(Callback.job_id == job.id)
        .order_by(Callback.id.desc())
    ).all()
    return decide(job, [Answer(int(i), str(s), r) for i, s, r in rows])


def decide(job: Job, stored: Sequence[Answer]) -> RetryPlan | RetryRefusal:
    """The rule itself, over the job's stored answers newest first."""
    if job.status is not JobStatus.FAILED:
        return RetryRefusal(f"only a failed job can be retried; this one is {job.status}")
    if any(a.status == ResultStatus.SUCCESS for a in stored):
        return RetryPlan(RetryAction.REARCHIVE, "the provider delivered a result")
    if job.provider_request_id is not None:
        return _generation_with_an_id(job, job.provider_request_id, stored)
    return _generation_without_an_id(job, stored)


def _generation_with_an_id(
    job: Job, current: str, stored: Sequence[Answer]
) -> RetryPlan | RetryRefusal:
    # A retry clears the id, so this is the generation in hand: only the provider's own
    # "failed" for this id settles it.
    if not any(a.status == ResultStatus.FAILED and a.request_id == current for a in stored):
        return RetryRefusal(ACCEPTED_NO_RESULT)
    if job.submit_attempted_at is not None and (job.submit_attempts or 0) > 1:
        # An unanswered call after another one: that later call may be generating.
        return RetryRefusal(UNANSWERED)
    return RetryPlan(RetryAction.RESUBMIT, "the provider reported that the generation failed")


def _generation_without_an_id(job: Job, stored: Sequence[Answer]) -> RetryPlan | RetryRefusal:
    if job.submit_attempted_at is not None:
        return RetryRefusal(UNANSWERED)
    # Its newest answer is the provider's last word on it. An answer with an id is an
    # earlier generation's (this one's id would be the job's), and an earlier generation's
    # answers are all older than this one's.
    newest = next((a for a in stored if a.request_id is None), None)
    if newest is None:
        return RetryPlan(RetryAction.RESUBMIT, "it never reached the provider")
    if newest.status == ResultStatus.FAILED:
        return RetryPlan(RetryAction.RESUBMIT, "the provider refused or failed it")
    # Accepted ("processing") without an id, and never finished: it may still be generating.
    return RetryRefusal(ACCEPTED_NO_RESULT)


def retry_job(
    db: Database,
    queue: TaskQueue,
    job_id: str,
    *,
    expect: RetryAction | None = None,
    on_retry: Callable[[Session, Job, RetryPlan], object] | None = None,
) -> RetryPlan:
    """Carry out ``retry_plan``; Conflict with the reason when there is none.

    ``expect``: the action the operator was shown; if the job changed since (a result came
    in, say), nothing is done and Conflict says what a retry would do now. ``on_retry`` runs
    in the retry's transaction (the audit row commits with the retry, or neither does).
    """
    with db.transaction() as session:
        job = records.get_job(session, job_id, for_update=True)
        plan = assess(session, job)
        if isinstance(plan, RetryRefusal):
            raise Conflict(plan.reason)
        if expect is not None and plan.action is not expect:
            raise Conflict(
                f"the job changed since it was shown: a retry would now {plan.label.lower()}"
            )
        # The one sanctioned move out of `failed`, hence set directly rather than advanced.
        job.status = plan.target
        job.error_code = None
        job.error_message = None
        job.updated_at = utcnow()
        if plan.action is RetryAction.RESUBMIT:
            _start_a_new_generation(job)
            kind = TaskKind.SUBMIT
        else:
            kind = TaskKind.ARCHIVE
        # Revive the same deduplicated task: already-archived objects are skipped, not rewritten.
        queue.enqueue(session, kind, job_id=job.id, dedupe_key=f"{kind}:{job.id}", revive=True)
        if on_retry is not None:
            on_retry(session, job, plan)
    return plan


def _start_a_new_generation(job: Job) -> None:
    """Forget the failed generation's handles, so the Submitter calls the provider again.

    The same ``track_id`` (the job's identity in its webhook URL): the new generation's
    answers carry a new provider id, and results.apply ignores a repeated failure of the
    old one. The failed generation's answers stay in the callbacks table, as history.
    ``submit_attempts`` goes on counting: the Submitter records the new call as the next
    attempt, with nothing left pending (the last attempt's outcome is known).
    """
    job.provider_request_id = None
    job.fetch_url = None
    job.poll_after = None
    job.result_callback_id = None
    job.nsfw = None
    job.submit_attempted_at = None
    # Recorded again by the Submitter: the manifest's `submitted_at` is then that of the
    # generation whose images it lists.
    job.submitted_at = None
