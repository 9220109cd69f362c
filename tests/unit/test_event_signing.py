"""Our Standard Webhooks signing against the official ``standardwebhooks`` package."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.events import signing
from service.events.outbox import event_type_for
from service.events.types import EventType
from service.fetch.pinned import retry_after_seconds
from service.jobs.states import JobStatus

BODY = json.dumps({"type": "job.archived", "timestamp": "2026-11-23T00:00:00+00:00"}).encode()


def test_secret_is_whsec_and_32_random_bytes() -> None:
    a, b = signing.new_secret(), signing.new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32


def test_our_headers_verify_with_the_official_library() -> None:
    secret = signing.new_secret()
    headers = signing.headers([secret], "evt_1", BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    assert headers["webhook-id"] == "evt_1"


def test_our_signature_equals_the_official_one() -> None:
    secret = signing.new_secret()
    now = int(time.time())
    official = Webhook(secret).sign("evt_2", datetime.fromtimestamp(now, UTC), BODY.decode())
    assert signing.signature(secret, "evt_2", now, BODY) == official


def test_two_secrets_give_two_entries_each_verifying() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.headers([new, old], "evt_3", BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(BODY, headers)


def test_verify_refuses_tampering_and_stale_timestamps() -> None:
    secret = signing.new_secret()
    headers = signing.headers([secret], "evt_4", BODY)
    signing.verify(secret, BODY, headers)
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, BODY + b" ", headers)
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, BODY, {**headers, "webhook-id": "evt_5"})
    stale = signing.headers([secret], "evt_4", BODY, timestamp=int(time.time()) - 600)
    with pytest.raises(signing.SignatureError):
        signing.verify(secret, BODY, stale)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, stale)  # the official library agrees


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (JobStatus.SUBMITTED, JobStatus.PROCESSING, EventType.JOB_SUBMITTED),
        (JobStatus.SUBMITTED, JobStatus.ARCHIVING, EventType.JOB_SUBMITTED),
        (JobStatus.QUEUED, JobStatus.SUBMITTED, None),  # recorded before the provider answers
        (JobStatus.PROCESSING, JobStatus.ARCHIVING, None),
        (JobStatus.ARCHIVING, JobStatus.ARCHIVED, EventType.JOB_ARCHIVED),
        (JobStatus.PROCESSING, JobStatus.FAILED, EventType.JOB_FAILED),
    ],
)
def test_which_transition_emits_what(
    old: JobStatus, new: JobStatus, expected: EventType | None
) -> None:
    assert event_type_for(old, new) is expected


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    value = retry_after_seconds(later)
    assert value is not None and 80 <= value <= 91
