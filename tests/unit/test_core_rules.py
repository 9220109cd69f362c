"""Pure rules: webhook tokens, job state order, retry decisions, redaction, settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random

import pytest

from service.cli import main
from service.config import load_settings
from service.errors import ConfigError, PermanentError, TransientError
from service.jobs.states import JobStatus, can_advance, retry_target
from service.security.redaction import REDACTED, redact, redact_url
from service.security.tokens import (
    file_signature,
    verify_file_signature,
    verify_webhook_token,
    webhook_token,
)
from service.tasks.retry_policy import RetryPolicy

SECRET = b"s3cret"


def test_webhook_token_is_bound_to_secret_provider_and_track_id() -> None:
    token = webhook_token(SECRET, "modelslab", "abc")
    assert verify_webhook_token(SECRET, "modelslab", "abc", token)
    assert "=" not in token and "+" not in token and "/" not in token  # URL-safe, unpadded
    assert not verify_webhook_token(SECRET, "modelslab", "abd", token)
    assert not verify_webhook_token(SECRET, "aimlapi", "abc", token)
    assert not verify_webhook_token(b"other", "modelslab", "abc", token)
    assert not verify_webhook_token(SECRET, "modelslab", "abc", token[:-1])
    assert verify_webhook_token(SECRET, "modelslab", "abc", token + "=")  # padded base64 too
    assert not verify_webhook_token(SECRET, "modelslab", "abc", "")
    assert not verify_webhook_token(SECRET, "modelslab", "abc", None)


def test_tokens_are_the_standard_hmac_whatever_secrets_came_before() -> None:
    # Tokens are made from a keyed HMAC kept per secret and copied for each message: more
    # secrets than it keeps, interleaved, must each give the one-shot HMAC-SHA256's token.
    secrets = [b"s3cret", b"", b"k" * 64, b"k" * 65, *(f"secret-{n}".encode() for n in range(12))]
    rng = random.Random(7)
    for _ in range(400):
        secret = rng.choice(secrets)
        track_id = f"{rng.getrandbits(64):x}"
        digest = hmac.digest(secret, f"modelslab{track_id}".encode(), hashlib.sha256)
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert webhook_token(secret, "modelslab", track_id) == expected
        assert verify_webhook_token(secret, "modelslab", track_id, expected)


def test_file_signatures_expire_and_never_double_as_webhook_tokens() -> None:
    sig = file_signature(SECRET, "2026/01/01/j/0.png", 2000)
    assert verify_file_signature(SECRET, "2026/01/01/j/0.png", 2000, sig, now=1999)
    assert not verify_file_signature(SECRET, "2026/01/01/j/0.png", 2000, sig, now=2001)
    assert not verify_file_signature(SECRET, "2026/01/01/j/1.png", 2000, sig, now=1999)
    assert not verify_file_signature(SECRET, "2026/01/01/j/0.png", 2001, sig, now=1999)
    # The "file:" prefix keeps a link signature from ever passing as a provider's token.
    assert not verify_webhook_token(SECRET, "modelslab", "2026/01/01/j/0.png", sig)


ORDER = [
    JobStatus.QUEUED,
    JobStatus.SUBMITTED,
    JobStatus.PROCESSING,
    JobStatus.ARCHIVING,
    JobStatus.ARCHIVED,
]


@pytest.mark.parametrize("current", list(JobStatus))
@pytest.mark.parametrize("new", list(JobStatus))
def test_states_only_move_forward(current: JobStatus, new: JobStatus) -> None:
    if current in (JobStatus.ARCHIVED, JobStatus.FAILED, JobStatus.DELETED):
        expected = False
    elif new is JobStatus.DELETED:
        expected = False  # erasure, not a move forward
    elif new is JobStatus.FAILED:
        expected = True
    else:
        expected = ORDER.index(new) > ORDER.index(current)
    assert can_advance(current, new) is expected


def test_only_an_operator_retry_leaves_failed() -> None:
    assert retry_target(JobStatus.FAILED, has_result=True) is JobStatus.ARCHIVING
    assert retry_target(JobStatus.FAILED, has_result=False) is JobStatus.QUEUED
    assert all(retry_target(s, True) is None for s in JobStatus if s is not JobStatus.FAILED)


def test_retry_decisions_follow_the_kind_of_error() -> None:
    policy = RetryPolicy(max_attempts=4, base_seconds=1, max_seconds=30)
    rng = random.Random(1)
    assert policy.delay(1, PermanentError("bad image")) is None
    assert policy.delay(4, TransientError("timeout")) is None, "attempts are capped"
    assert policy.delay(1, TransientError("429", retry_after=17)) == 17
    assert policy.delay(1, TransientError("429", retry_after=999)) == 30, "retry_after is capped"
    first = [policy.delay(1, TransientError(), rng) for _ in range(20)]
    third = [policy.delay(3, TransientError(), rng) for _ in range(20)]
    assert all(0.5 <= d <= 1 for d in first)  # type: ignore[operator]
    assert all(2 <= d <= 4 for d in third)  # type: ignore[operator]
    assert len(set(third)) > 1, "jittered"
    assert policy.delay(1, KeyError("bug")) is not None, "an unexpected error is retried"


def test_redaction_removes_keys_tokens_and_signatures_but_keeps_the_rest() -> None:
    body = {
        "key": "ml-secret",
        "track_id": "t1",
        "meta": {"webhook": "https://gv.example/webhooks/modelslab/t1?token=abc", "seed": 4},
        "output": ["https://b.s3.amazonaws.com/x.png?X-Amz-Signature=dead&X-Amz-Expires=60"],
        "list": [{"api_key": "k"}],
    }
    clean = redact(body)
    assert clean["key"] == REDACTED and clean["list"][0]["api_key"] == REDACTED
    assert clean["track_id"] == "t1" and clean["meta"]["seed"] == 4
    assert clean["meta"]["webhook"] == "https://gv.example/webhooks/modelslab/t1?token=[redacted]"
    assert "dead" not in clean["output"][0] and "X-Amz-Expires=60" in clean["output"][0]
    assert redact_url("https://gv.example/w?token=abc&x=1") == (
        "https://gv.example/w?token=[redacted]&x=1"
    )


def test_a_missing_required_setting_stops_start_up_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    for name in ("GENVAULT_SECRET_KEY", "GENVAULT_API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    assert main(["worker"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "genvault: GENVAULT_SECRET_KEY is required (set it in the environment)"
    monkeypatch.setenv("GENVAULT_SECRET_KEY", "x" * 32)
    # API keys live in the database: no token is required to start (the first key comes
    # from `genvault keys create --bootstrap`).
    assert load_settings().api_tokens == ()
    monkeypatch.setenv("GENVAULT_OIDC_ISSUER", "http://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"GENVAULT_OIDC_CLIENT_ID and .* go together"):
        load_settings()
    monkeypatch.delenv("GENVAULT_OIDC_ISSUER")
    monkeypatch.setenv("GENVAULT_DOWNLOAD_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match=r"^GENVAULT_DOWNLOAD_MAX_BYTES: "):
        load_settings(require_secrets=False)
