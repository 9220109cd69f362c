"""The states the tables store: a job's status, a task's kind and status.

They live with the tables (service.db.models stores them as plain strings) so the models
import nothing from the layers above; service.jobs.states (the rules of a job's moves) and
service.tasks re-export them.
"""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    ARCHIVING = "archiving"
    ARCHIVED = "archived"
    FAILED = "failed"
    # Erased on request (DELETE /v1/jobs/{id}): objects removed, a tombstone left.
    DELETED = "deleted"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.ARCHIVED, JobStatus.FAILED, JobStatus.DELETED)


class TaskKind(enum.StrEnum):
    SUBMIT = "submit"  # send a job to its provider
    POLL = "poll"  # ask the provider how a job is doing
    ARCHIVE = "archive"  # download, verify and store a job's images, then the manifest
    DELIVER_EVENT = "deliver_event"  # one signed POST of an event to one endpoint
    CALLBACK = "callback"  # apply a stored webhook callback to its job (jobs/applying.py)


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
