"""The event types genvault sends, and how an event id looks."""

from __future__ import annotations

import enum
import secrets
import time


class EventType(enum.StrEnum):
    JOB_SUBMITTED = "job.submitted"  # the provider accepted the job
    JOB_ARCHIVED = "job.archived"
    JOB_FAILED = "job.failed"
    JOB_DELETED = "job.deleted"  # erased on request: objects removed, a tombstone left
    AUDIT_FAILED = "audit.failed"  # an audit found a problem with an archived job
    ENDPOINT_DISABLED = "endpoint.disabled"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def new_event_id() -> str:
    # Time-ordered like job ids, so ids sort by creation and page stably; the prefix tells
    # a receiver's logs what kind of id it is (Svix: msg_).
    return f"evt_{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def new_endpoint_id() -> str:
    return f"ep_{int(time.time() * 1000):012x}{secrets.token_hex(8)}"
