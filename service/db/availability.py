"""Telling "the database is not answering" apart from other errors, and waiting it out.

A restart or a failover makes every statement fail for a while with a connection error. Such
an error says nothing about the work itself, so callers that already hold a result (a
provider's answer, a task's outcome) keep it and write it again once the database answers.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

T = TypeVar("T")

# What the drivers raise when the server is gone or unreachable: psycopg's OperationalError
# (refused, reset, "terminating connection due to administrator command"), InterfaceError on a
# closed connection, a pool checkout that timed out, and SQLite's "database is locked".
_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


# SQLite raises OperationalError for a schema problem ("no such table") as well; only these
# mean "try again later".
_SQLITE_BUSY = ("locked", "busy", "unable to open", "disk i/o")


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database did not answer (as opposed to refusing the work)."""
    if isinstance(error, sa_exc.DBAPIError) and isinstance(error.orig, sqlite3.Error):
        message = str(error.orig).lower()
        return any(word in message for word in _SQLITE_BUSY)
    if isinstance(error, _UNAVAILABLE) or _driver_unavailable(error):
        return True
    return isinstance(error, sa_exc.DBAPIError) and bool(error.connection_invalidated)


def _driver_unavailable(error: BaseException) -> bool:
    """psycopg's own errors, from code that talks to the driver directly (jobs/ingest.py)."""
    try:
        import psycopg
    except ImportError:  # the postgres extra is not installed: no such errors either
        return False
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError)


class DatabaseUnavailable(Exception):
    """Gave up waiting for the database (only when stopping)."""


def until_answered(
    write: Callable[[], T],
    *,
    what: str,
    stop: threading.Event | None = None,
    first_wait: float = 0.2,
    max_wait: float = 5.0,
    extra: dict[str, object] | None = None,
) -> T:
    """Run ``write`` until it gets through; retry only while the database is unavailable.

    Backs off from ``first_wait`` to ``max_wait`` seconds. Any other error propagates at once.
    ``stop`` set while waiting raises DatabaseUnavailable: the caller is shutting down and
    the task's lease, not this loop, brings the work back.
    """
    wait = first_wait
    failures = 0
    while True:
        try:
            result = write()
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            failures += 1
            if failures == 1 or failures % 10 == 0:
                log.warning(
                    "database unavailable while %s; retrying: %s",
                    what,
                    type(exc).__name__,
                    extra={"failures": failures, **(extra or {})},
                )
            if stop is not None and stop.wait(wait):
                raise DatabaseUnavailable(f"stopped while {what}") from exc
            if stop is None:
                time.sleep(wait)
            wait = min(wait * 2, max_wait)
            continue
        if failures:
            log.info(
                "database answered again while %s",
                what,
                extra={"failures": failures, **(extra or {})},
            )
        return result


class OutageNotice:
    """Says once that a loop's work fails and once that it works again, not every retry.

    The worker's loops (claiming, renewing leases) retry about every second while the
    database is away: a line, let alone a traceback, each time would bury the rest of the log.
    Tracebacks go to debug. ``log`` is the caller's, so the lines carry its logger's name.
    """

    def __init__(self, log: logging.Logger, failing: str, resumed: str) -> None:
        self.log = log
        self.failing = failing
        self.resumed = resumed
        self.away = False

    def failed(self, error: BaseException) -> None:
        if not self.away:
            self.away = True
            self.log.warning("%s: %s", self.failing, type(error).__name__)
        self.log.debug(self.failing, exc_info=error)

    def succeeded(self) -> None:
        if self.away:
            self.away = False
            self.log.info(self.resumed)
