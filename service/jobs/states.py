"""Job states and the rule that they only move forward.

    queued → submitted → processing → archiving → archived
       └──────────┴───────────┴────────────┴──→ failed

A late or duplicate callback never moves a job back. The one way out of ``failed`` is an
operator's explicit retry (see ``retry_target``). ``deleted`` is no move forward: an archived
or failed job is erased on request (jobs/erasure.py), and nothing leaves it.
"""

from __future__ import annotations

from service.db.enums import JobStatus

__all__ = ["WAITING_ON_PROVIDER", "JobStatus", "can_advance", "retry_target"]


_RANK = {
    JobStatus.QUEUED: 0,
    JobStatus.SUBMITTED: 1,
    JobStatus.PROCESSING: 2,
    JobStatus.ARCHIVING: 3,
    JobStatus.ARCHIVED: 4,
}

# Jobs in these states are waiting on a provider, so the reconciler may poll them.
WAITING_ON_PROVIDER = (JobStatus.SUBMITTED, JobStatus.PROCESSING)


def can_advance(current: JobStatus, new: JobStatus) -> bool:
    """Whether ``current`` may become ``new`` without an operator's retry."""
    if current.terminal or new is JobStatus.DELETED:
        return False
    if new is JobStatus.FAILED:
        return True
    return _RANK[new] > _RANK[current]


def retry_target(current: JobStatus, has_result: bool) -> JobStatus | None:
    """Where an operator's retry puts a failed job: re-archive the provider's result if it
    delivered one, else re-submit (whether that is allowed: jobs.operator_retry)."""
    if current is not JobStatus.FAILED:
        return None
    return JobStatus.ARCHIVING if has_result else JobStatus.QUEUED
