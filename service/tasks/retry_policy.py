"""Retry policy as a value: given an error and the attempt number, retry when, or give up."""

from __future__ import annotations

import random
from dataclasses import dataclass

from service.errors import PermanentError, TransientError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, decided by the error's kind."""

    max_attempts: int = 10
    base_seconds: float = 2.0
    max_seconds: float = 600.0

    def delay(
        self, attempt: int, error: BaseException, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up.

        ``attempt`` counts from 1 (the attempt that just failed).
        """
        if isinstance(error, PermanentError) or attempt >= self.max_attempts:
            return None
        if isinstance(error, TransientError) and error.retry_after is not None:
            # The provider said when; asking earlier only burns the rate limit again.
            return min(max(error.retry_after, 0.0), self.max_seconds)
        ceiling = min(self.max_seconds, self.base_seconds * 2.0 ** (attempt - 1))
        # Full jitter (half fixed, half random) spreads a herd of retries after an outage.
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
