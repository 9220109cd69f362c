"""The kinds of background task, one handler each (see wiring.Container.worker)."""

from __future__ import annotations

import enum


class TaskKind(enum.StrEnum):
    SUBMIT = "submit"  # send a job to its provider
    POLL = "poll"  # ask the provider how a job is doing
    ARCHIVE = "archive"  # download, verify and store a job's images, then the manifest
    DELIVER_EVENT = "deliver_event"  # one signed POST of an event to one endpoint
    CALLBACK = "callback"  # apply a stored webhook callback to its job (jobs/applying.py)
