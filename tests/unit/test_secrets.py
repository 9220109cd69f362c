"""Secrets that can't be weak, and no dev mode reachable from the environment."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from service.cli import main
from service.config import PUBLISHED_SECRETS, Settings, load_settings
from service.errors import ConfigError
from service.security.local_secret import local_secret, read_local_secret
from service.security.signing import BadSignature, Verifier, signer_from_settings

STRONG = "s" * 32


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GENVAULT_SECRET_KEY", "GENVAULT_API_TOKENS", "GENVAULT_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env, no var/ of the developer's checkout


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "at least 32 bytes"),
        ("short", "at least 32 bytes"),
        ("x" * 31, "at least 32 bytes"),
        (min(PUBLISHED_SECRETS).decode(), "published"),  # min: the same one in every process
    ],
)
def test_a_weak_secret_key_stops_start_up_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, problem: str
) -> None:
    monkeypatch.setenv("GENVAULT_SECRET_KEY", value)
    monkeypatch.setenv("GENVAULT_API_TOKENS", "tok")
    with pytest.raises(ConfigError, match=rf"^GENVAULT_SECRET_KEY: .*{problem}"):
        load_settings()
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genvault: GENVAULT_SECRET_KEY: ")
    assert value not in err or value == ""


def test_a_32_byte_secret_is_accepted() -> None:
    assert load_settings(secret_key=STRONG, api_tokens="t").secret == STRONG.encode()


@pytest.mark.parametrize("value", ["", "not base64!", base64.b64encode(b"x" * 31).decode()])
def test_a_signing_key_must_be_a_32_byte_seed(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^GENVAULT_SIGNING_KEY: .*32-byte Ed25519 seed"):
        load_settings(secret_key=STRONG, api_tokens="t", signing_key=value)


def test_the_signing_key_is_the_seed_when_set_and_derived_from_the_secret_otherwise() -> None:
    seed = base64.b64encode(bytes(range(32))).decode()
    explicit = signer_from_settings(
        load_settings(secret_key=STRONG, api_tokens="t", signing_key=seed)
    )
    derived = signer_from_settings(load_settings(secret_key=STRONG, api_tokens="t"))
    again = signer_from_settings(load_settings(secret_key=STRONG, api_tokens="t"))
    other = signer_from_settings(load_settings(secret_key="o" * 32, api_tokens="t"))
    assert derived.verifier == again.verifier  # stable: old archives stay verifiable
    assert len({explicit.verifier, derived.verifier, other.verifier}) == 3
    signature = derived.sign(b"manifest bytes")
    derived.verifier.verify(b"manifest bytes", signature)
    for verifier, data in ((other.verifier, b"manifest bytes"), (derived.verifier, b"other")):
        with pytest.raises(BadSignature):
            verifier.verify(data, signature)
    published = Verifier.from_base64(derived.verifier.public_base64)
    published.verify(b"manifest bytes", signature)
    assert STRONG not in repr(derived) and seed not in repr(explicit)


def test_dev_mode_is_not_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENVAULT_DEV", "1")
    assert "dev" not in Settings.model_fields
    with pytest.raises(ConfigError, match=r"^GENVAULT_SECRET_KEY is required"):
        load_settings()
    monkeypatch.setenv("GENVAULT_SECRET_KEY", STRONG)
    # No token appears out of GENVAULT_DEV: the dev token exists only inside `genvault dev`.
    assert load_settings().api_tokens == ()


def test_dev_secret_is_random_kept_private_and_found_by_the_local_cli(tmp_path: Path) -> None:
    path = tmp_path / "var" / "dev-secret-key"
    assert read_local_secret(path) is None
    first = local_secret(path)
    assert len(first.encode()) >= 32 and local_secret(path) == first
    assert path.stat().st_mode & 0o077 == 0
    assert local_secret(tmp_path / "other") != first


def test_create_app_from_the_environment_refuses_the_dev_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from service.app import create_app
    from service.config import DEV_API_TOKEN

    monkeypatch.setenv("GENVAULT_DEV", "1")
    monkeypatch.setenv("GENVAULT_SECRET_KEY", STRONG)
    monkeypatch.setenv("GENVAULT_API_TOKENS", "the-real-token")
    monkeypatch.setenv("GENVAULT_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("GENVAULT_ARCHIVE_URL", f"file://{tmp_path / 'archive'}")
    app = create_app()  # what `gunicorn "service.app:create_app()"` runs
    answer = app.test_client().get(
        "/v1/jobs/x", headers={"Authorization": f"Bearer {DEV_API_TOKEN}"}
    )
    assert answer.status_code == 401
