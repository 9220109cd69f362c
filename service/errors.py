"""The exception tree of genvault.

    GenvaultError                 root; the docstring is the default message
    ├── ConfigError               a setting is missing or wrong (start-up stops)
    ├── RequestError              a client's request cannot be served (mapped to HTTP)
    │   ├── InvalidRequest        422 with per-field errors
    │   ├── Unauthorized          401
    │   ├── Forbidden             403 (names the scope that is missing)
    │   ├── NotFound              404
    │   └── Conflict              409
    │       └── Retained          409: Object Lock keeps objects until a date
    └── TaskError                 outcome of a background task
        ├── TransientError        retried with backoff (or after ``retry_after``)
        └── PermanentError        the job fails at once with ``code`` and the message

Messages must never carry secrets: they end up in job JSON and logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


class GenvaultError(Exception):
    """Something went wrong in genvault."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or type(self).__name__).strip().splitlines()[0]
        super().__init__(self.message)


class ConfigError(GenvaultError):
    """A required setting is missing or invalid."""


class RequestError(GenvaultError):
    """The request cannot be served."""

    status = 400
    code = "bad_request"


@dataclass(frozen=True)
class FieldError:
    """One bad field: where it is (``params.width``) and what is wrong with it."""

    field: str
    message: str


class InvalidRequest(RequestError):
    """The request is invalid."""

    status = 422
    code = "invalid_request"

    def __init__(self, errors: Sequence[FieldError], message: str | None = None) -> None:
        self.errors = list(errors)
        super().__init__(message)


class Unauthorized(RequestError):
    """A valid bearer token is required."""

    status = 401
    code = "unauthorized"


class Forbidden(RequestError):
    """This credential may not do that."""

    status = 403
    code = "forbidden"

    def __init__(self, message: str | None = None, *, scope: str | None = None) -> None:
        self.scope = scope
        super().__init__(message)


class NotFound(RequestError):
    """Not found."""

    status = 404
    code = "not_found"


class Conflict(RequestError):
    """The resource is not in a state that allows this."""

    status = 409
    code = "conflict"


class Retained(Conflict):
    """The archive keeps these objects under S3 Object Lock; nothing was removed."""

    code = "retained"

    def __init__(self, message: str | None = None, *, until: datetime | None) -> None:
        # None: a legal hold, which has no date.
        self.until = until
        super().__init__(message)


class TaskError(GenvaultError):
    """A background task did not complete.

    ``reason`` is a short machine-readable cause where one is known (``http_404``,
    ``timeout``, ``no_such_host``, a policy rule): the manifest lists a failed input with it.
    """

    reason: str | None = None


class TransientError(TaskError):
    """A temporary failure; the task will be retried."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(TaskError):
    """A failure that retrying cannot fix; the job fails."""

    code = "failed"

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        super().__init__(message)
