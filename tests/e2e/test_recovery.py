"""When webhooks are missing, late, doubled, or the archive fails: polling, the reconciler,
the maximum age, and an operator's retry, end to end through the sandbox."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from service.security.tokens import webhook_token
from tests.support.archive_checks import (
    ImageOrigin,
    archived,
    assert_logs_clean,
    assert_no_secrets,
    callbacks,
    content_keys,
    job_keys,
    png_bytes,
    s3_client,
    settle,
    verify_archive,
)
from tests.support.stack import SECRET, Stack

pytestmark = pytest.mark.e2e

TEXT2IMG = "modelslab/text2img"
ENTERPRISE = "modelslab-enterprise/flux_kontext_dev/img2img"


def failed_with(stack: Stack, job: dict[str, Any], code: str) -> dict[str, Any]:
    done = settle(stack, job)
    assert done["status"] == "failed", done
    assert set(done["error"]) == {"code", "message"}
    assert done["error"]["code"] == code, done["error"]
    assert isinstance(done["error"]["message"], str) and done["error"]["message"].strip()
    assert_no_secrets(json.dumps(done))
    return done


def webhook_hits(stack: Stack, track_id: str) -> int:
    """Webhook deliveries the web tier answered 200, from its access log."""
    text = (stack.logs / "web.log").read_text(errors="replace")
    return text.count(f'"POST /webhooks/modelslab/{track_id}" 200')


def wait_for(predicate: Callable[[], bool], stack: Stack, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out\n{stack.tail_logs()}")
        time.sleep(0.1)


def without_urls(job: dict[str, Any]) -> list[dict[str, Any]]:
    # Presigned links differ from one read to the next; everything else must not.
    return [{k: v for k, v in asset.items() if k != "url"} for asset in job["assets"]]


def objects(stack: Stack, job_id: str) -> dict[str, str]:
    """Key → ETag of the job's objects: equal maps mean nothing was written again."""
    s3 = s3_client(stack)
    return {
        key: s3.head_object(Bucket=stack.bucket, Key=key)["ETag"] for key in job_keys(stack, job_id)
    }


def test_polling_archives_when_the_webhook_never_comes(
    stack_factory: Callable[..., Stack],
) -> None:
    stack = stack_factory()
    v6 = stack.submit(
        TEXT2IMG,
        {"model_id": "flux", "prompt": "e2e [sandbox:processing,eta=0.5,webhook-never]"},
    )
    # No id at all (enterprise servers send null): only fetch_result can be polled.
    enterprise = stack.submit(
        ENTERPRISE,
        {"prompt": "e2e [sandbox:processing,id-null,eta=0.5,webhook-never]", "width": 256},
    )
    for job in (v6, enterprise):
        done = archived(stack, job)
        manifest = verify_archive(stack, done)
        assert manifest["provider"]["response_source"] == "poll"
        sources = callbacks(stack, done["id"])
        assert sources[0] == ("submit", "processing")
        assert sources[-1] == ("poll", "success")
        assert {source for source, _ in sources} == {"submit", "poll"}
        assert webhook_hits(stack, done["track_id"]) == 0
    assert stack.job(enterprise["id"])["provider_request_id"] is None
    assert_logs_clean(stack)


def test_late_and_duplicate_webhooks_change_nothing(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    # The sandbox sends a late webhook 3 s after the result is ready; the poll comes first.
    late = stack.submit(
        TEXT2IMG,
        {"model_id": "flux", "prompt": "e2e [sandbox:processing,eta=0.3,webhook-late]"},
    )
    twice = stack.submit(
        TEXT2IMG,
        {
            "model_id": "flux",
            "prompt": "e2e [sandbox:processing,eta=0.3,webhook-twice]",
            "samples": 2,
        },
    )

    done = archived(stack, late)
    # First, before the slower checks below (ocfl-py among them) let the 3 s pass.
    assert webhook_hits(stack, done["track_id"]) == 0, "the webhook was not late after all"
    manifest = verify_archive(stack, done)
    assert manifest["provider"]["response_source"] == "poll"
    before = objects(stack, done["id"])
    wait_for(lambda: webhook_hits(stack, done["track_id"]) == 1, stack)
    after = stack.job(done["id"])
    assert after["status"] == "archived"
    assert without_urls(after) == without_urls(done)
    assert after["manifest_key"] == done["manifest_key"]
    assert objects(stack, done["id"]) == before
    # The late webhook is on record, as a webhook, and moved nothing.
    assert callbacks(stack, done["id"])[-1] == ("webhook", "success")
    assert verify_archive(stack, after)["provider"]["response_source"] == "poll"

    done = archived(stack, twice)
    wait_for(lambda: webhook_hits(stack, done["track_id"]) == 2, stack)
    time.sleep(0.5)  # give a wrongly queued second archive the time to show itself
    after = stack.job(done["id"])
    assert after["status"] == "archived" and after["manifest_key"] == done["manifest_key"]
    verify_archive(stack, after)
    assert len(content_keys(stack, done["id"])) == 6  # 2 images, 2 thumbnails, manifest, signature
    # The second delivery was recognised as the same callback and not even recorded.
    assert [c for c in callbacks(stack, done["id"]) if c[0] == "webhook"] == [
        ("webhook", "success")
    ]
    assert_logs_clean(stack)


def test_a_job_that_never_finishes_fails_with_a_timeout(
    stack_factory: Callable[..., Stack],
) -> None:
    # Old enough to fail soon, young enough to be seen processing first: with 3 s, a loaded
    # machine (CI, four test workers) had the job fail before its submit was answered.
    stack = stack_factory(GENVAULT_JOB_MAX_AGE_SECONDS="8")
    job = stack.submit(
        TEXT2IMG,
        {"model_id": "flux", "prompt": "e2e [sandbox:processing,eta=3600,webhook-never]"},
    )
    processing = stack.wait_status(job["id"], "processing", "failed")
    assert processing["status"] == "processing"
    done = failed_with(stack, job, "timeout")
    assert "8 s" in done["error"]["message"]
    assert job_keys(stack, done["id"]) == []
    assert_logs_clean(stack)


def test_the_reconciler_polls_a_stuck_job(stack_factory: Callable[..., Stack]) -> None:
    # The scheduled poll is an hour away: only the reconciler can find these jobs in time.
    stack = stack_factory(
        GENVAULT_POLL_GRACE_SECONDS="3600",
        GENVAULT_JOB_STUCK_AFTER_SECONDS="1",
        GENVAULT_RECONCILE_INTERVAL_SECONDS="0.5",
    )
    stuck = stack.submit(
        TEXT2IMG,
        {"model_id": "flux", "prompt": "e2e [sandbox:processing,eta=0.5,webhook-never]"},
    )
    # Still processing when first polled, and answering that with HTTP 400 (seen in the wild).
    slow = stack.submit(
        TEXT2IMG,
        {
            "model_id": "flux",
            "prompt": "e2e [sandbox:processing,processing400,eta=3,webhook-never]",
        },
    )
    for job in (stuck, slow):
        done = archived(stack, job)
        manifest = verify_archive(stack, done)
        assert manifest["provider"]["response_source"] == "poll"
        assert webhook_hits(stack, done["track_id"]) == 0
    sources = callbacks(stack, slow["id"])
    assert ("poll", "processing") in sources and sources[-1] == ("poll", "success")
    worker_log = (stack.logs / "worker0.log").read_text()
    assert "answered HTTP 400" in worker_log
    assert_logs_clean(stack)


def test_retry_rearchives_a_failed_archive_exactly_once(
    stack_factory: Callable[..., Stack], origin: ImageOrigin
) -> None:
    # The provider never calls back and the poll comes late: this test plays the provider.
    stack = stack_factory(GENVAULT_POLL_GRACE_SECONDS="60")
    job = stack.submit(
        TEXT2IMG,
        {"model_id": "flux", "prompt": "e2e [sandbox:processing,eta=0.3,webhook-never]"},
    )
    job = stack.wait(job["id"], lambda j: j["status"] == "processing" and j["provider_request_id"])
    # A future link that is not ready yet answers with an HTML page and 200.
    output = origin.serve("/generations/out-0.png", b"<html><body>soon</body></html>", "text/html")
    body = {
        "status": "success",
        "id": int(job["provider_request_id"]),
        "output": [output],
        "generationTime": 0.5,
        "track_id": job["track_id"],
        "meta": {"width": 512, "height": 512, "base64": "no"},
    }
    token = webhook_token(SECRET.encode(), "modelslab", job["track_id"])
    r = requests.post(
        f"{stack.web_url}/webhooks/modelslab/{job['track_id']}?token={token}",
        json=body,
        timeout=10,
    )
    assert r.status_code == 200 and r.json() == {"status": "accepted"}, r.text

    broken = failed_with(stack, job, "invalid_image")
    assert broken["assets"] == [] and broken["manifest_key"] is None
    assert job_keys(stack, job["id"]) == []

    image = png_bytes(96, 64, (12, 34, 56))
    origin.serve("/generations/out-0.png", image)
    retry_url = f"{stack.web_url}/v1/jobs/{job['id']}/retry"
    r = requests.post(retry_url, headers=stack.auth, timeout=10)
    assert r.status_code == 202, r.text
    assert r.json()["error"] is None

    done = archived(stack, job)
    manifest = verify_archive(stack, done)
    assert [(a["width"], a["height"]) for a in manifest["assets"]] == [(96, 64)]
    assert manifest["assets"][0]["source_url"] == output
    assert (
        len(content_keys(stack, job["id"])) == 4
    )  # image, thumbnail, manifest, signature: no duplicates
    assert origin.hits["/generations/out-0.png"] == 2
    keys = objects(stack, job["id"])

    # An archived job cannot be retried, and nothing is written again.
    r = requests.post(retry_url, headers=stack.auth, timeout=10)
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "conflict"
    assert "archived" in r.json()["error"]["message"]
    time.sleep(0.5)
    assert objects(stack, job["id"]) == keys
    assert stack.job(job["id"])["status"] == "archived"

    # Neither can one still waiting on its provider.
    waiting = stack.submit(
        TEXT2IMG,
        {"model_id": "flux", "prompt": "e2e [sandbox:processing,eta=3600,webhook-never]"},
    )
    stack.wait_status(waiting["id"], "processing")
    r = requests.post(
        f"{stack.web_url}/v1/jobs/{waiting['id']}/retry", headers=stack.auth, timeout=10
    )
    assert r.status_code == 409, r.text
    assert stack.job(waiting["id"])["status"] == "processing"
    assert_logs_clean(stack)
