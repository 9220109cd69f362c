"""What to do with a submission that may have reached the provider but left no answer.

The attempt is committed before the provider is called. If the worker then died, or the
database went away before the answer was written, the provider may be generating (and
charging for) the job. Calling it again blindly could pay twice, so the job first waits for
the webhook, which carries our ``track_id``; only after a grace period is it resubmitted (when
the operator chose that) or failed with ``submission_uncertain``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from service.db.models import Job

CODE = "submission_uncertain"


class Verdict(enum.Enum):
    WAIT = "wait"
    RESUBMIT = "resubmit"
    FAIL = "fail"


@dataclass(frozen=True)
class UncertainSubmissions:
    """The policy: wait ``grace_seconds`` for an answer, then resubmit or fail."""

    grace_seconds: float
    resubmit: bool

    @property
    def recheck_seconds(self) -> float:
        # A webhook settles the job on its own; the submit task only looks again to decide
        # at the end of the grace, a few times (each look counts as one task attempt).
        return max(self.grace_seconds / 4, 1.0)

    def pending_since(self, job: Job) -> datetime | None:
        """When the unanswered attempt was made; None when no attempt awaits an answer.

        An answer, or a refusal the provider gave, clears the attempt (jobs.submission);
        migration 0005 marks jobs that were mid-call before attempts were recorded.
        """
        return job.submit_attempted_at

    def decide(self, since: datetime, now: datetime) -> tuple[Verdict, float]:
        """The verdict and, for WAIT, the seconds until the next look."""
        left = self.grace_seconds - (now - since).total_seconds()
        if left > 0:
            return Verdict.WAIT, min(left, self.recheck_seconds)
        return (Verdict.RESUBMIT if self.resubmit else Verdict.FAIL), 0.0

    def message(self, job: Job) -> str:
        return (
            f"the provider was called (attempt {max(job.submit_attempts, 1)}) but no answer "
            f"was recorded, and no webhook for this track_id came within "
            f"{self.grace_seconds:.0f} s; not resubmitted, to avoid paying twice "
            f"(GENVAULT_RESUBMIT_UNCERTAIN=true resubmits instead)"
        )
