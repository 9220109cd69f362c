"""Settings: one frozen object, read once from the environment (and ``.env``) at start."""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Where the providers of PROVIDERS.md serve their outputs. Host suffixes: a suffix admits the
# host itself and its subdomains.
KNOWN_OUTPUT_HOSTS: tuple[str, ...] = (
    "pub-3626123a908346a7a8be8d9295f44e26.r2.dev",
    "pub-8b49af329fae499aa563997f5d4068a4.r2.dev",
    "stablediffusionapi.com",
    "modelslab.com",
    "modelslab.ai",
    "modelslab-bom.s3.amazonaws.com",
    "d1okzptojspljx.cloudfront.net",
    "aimlapi.com",
    "fal.media",
)

DEV_API_TOKEN = "genvault-dev-token"  # noqa: S105 - `genvault dev` only, on loopback
# Secrets that were printed in this repository at some point: anyone can mint webhook tokens
# and file links with them, so they are refused like an empty one.
PUBLISHED_SECRETS = frozenset(
    {b"genvault-dev-secret-not-for-production", b"change-me-to-a-long-random-string"}
)
# HMAC-SHA256 keys shorter than the hash add no strength and are guessable in practice.
MIN_SECRET_BYTES = 32

MIB = 1024 * 1024


class NsfwPolicy(enum.StrEnum):
    ARCHIVE = "archive"
    QUARANTINE = "quarantine"
    SKIP = "skip"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(BaseSettings):
    """Every setting of the public contract; see README "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix="GENVAULT_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    database_url: str = "sqlite:///var/genvault.db"
    archive_url: str = "file://var/archive"
    public_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None
    # Base64 of a 32-byte Ed25519 seed; unset, the key is derived from secret_key (HKDF).
    signing_key: SecretStr | None = None
    # Deprecated: every token is an admin on every project. API keys replace them.
    api_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    key_default_days: int = Field(90, ge=1)
    key_max_days: int = Field(365, ge=1)

    # People sign in to the dashboard through the company's OpenID Connect provider.
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_groups_claim: str = "groups"
    oidc_role_map: str = ""

    modelslab_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MODELSLAB_API_KEY", "modelslab_api_key")
    )
    modelslab_enterprise_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "MODELSLAB_ENTERPRISE_API_KEY", "modelslab_enterprise_api_key"
        ),
    )
    modelslab_base_url: str = Field(
        "https://modelslab.com/api",
        validation_alias=AliasChoices("MODELSLAB_BASE_URL", "modelslab_base_url"),
    )
    aimlapi_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AIMLAPI_API_KEY", "aimlapi_api_key")
    )
    aimlapi_base_url: str = Field(
        "https://api.aimlapi.com",
        validation_alias=AliasChoices("AIMLAPI_BASE_URL", "aimlapi_base_url"),
    )
    provider_timeout: float = Field(90.0, gt=0)

    download_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = KNOWN_OUTPUT_HOSTS
    download_allowed_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    download_max_bytes: int = Field(50 * MIB, gt=0)
    download_connect_timeout: float = Field(5.0, gt=0)
    download_read_timeout: float = Field(30.0, gt=0)
    download_total_timeout: float = Field(120.0, gt=0)
    download_max_redirects: int = Field(3, ge=0, le=10)
    max_image_pixels: int = Field(64_000_000, gt=0)

    webhook_max_bytes: int = Field(1 * MIB, gt=0)
    request_max_bytes: int = Field(8 * MIB, gt=0)
    confirm_callbacks: bool = False

    worker_concurrency: int = Field(4, ge=1, le=64)
    # Renewed every third of itself while the worker holds the task: short, so a dead
    # worker's tasks come back quickly.
    worker_lease_seconds: float = Field(30.0, gt=0)
    worker_poll_interval: float = Field(1.0, gt=0)
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    task_max_attempts: int = Field(10, ge=1)
    retry_base_seconds: float = Field(2.0, gt=0)
    retry_max_seconds: float = Field(600.0, gt=0)

    poll_grace_seconds: float = Field(10.0, ge=0)
    poll_max_attempts: int = Field(30, ge=1)
    reconcile_interval_seconds: float = Field(60.0, gt=0)
    job_stuck_after_seconds: float = Field(900.0, gt=0)
    job_max_age_seconds: float = Field(86_400.0, gt=0)
    # A non-final job with no live task for this long gets its task back (reconciler).
    job_orphan_after_seconds: float = Field(30.0, gt=0)
    submit_uncertain_grace_seconds: float = Field(600.0, ge=0)
    resubmit_uncertain: bool = False

    # Finished tasks, callbacks no job needs, and old events go after this many days
    # (service/db/retention.py); 0 keeps everything.
    retention_days: int = Field(30, ge=0)
    retention_interval_seconds: float = Field(300.0, gt=0)

    nsfw_policy: NsfwPolicy = NsfwPolicy.ARCHIVE
    presign_expires_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600)
    ui_session_seconds: int = Field(8 * 3600, ge=60, le=30 * 24 * 3600)

    s3_sse: str | None = Field(None, pattern="^(AES256|aws:kms)$")
    s3_kms_key_id: str | None = None
    s3_storage_class: str | None = None
    s3_object_lock_mode: str | None = Field(None, pattern="^(GOVERNANCE|COMPLIANCE)$")
    s3_object_lock_days: int | None = Field(None, ge=1)
    s3_multipart_threshold: int = Field(64 * MIB, ge=5 * MIB)

    # Events out (Standard Webhooks); see README "Events".
    events_retry_schedule: Annotated[tuple[float, ...], NoDecode] = (
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
    )
    events_timeout: float = Field(15.0, gt=0)
    events_allowed_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    events_disable_after_seconds: float = Field(432_000.0, gt=0)
    events_endpoint_concurrency: int = Field(2, ge=1, le=64)

    log_level: str = "INFO"
    log_json: bool | None = None

    @field_validator("api_tokens", "download_allowed_hosts", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("events_retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        value = _split_csv(value)
        if any(float(v) < 0 for v in value):
            raise ValueError("retry waits must be zero or more seconds")
        return value

    @field_validator("download_allowed_networks", "events_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        value = _split_csv(value)
        return tuple(ipaddress.ip_network(v, strict=False) for v in value)

    @field_validator("public_url", "modelslab_base_url", "aimlapi_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _key_days(self) -> Settings:
        if self.key_default_days > self.key_max_days:
            raise ValueError("GENVAULT_KEY_DEFAULT_DAYS must not exceed GENVAULT_KEY_MAX_DAYS")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        given = [self.oidc_issuer, self.oidc_client_id, self.oidc_client_secret]
        if any(v is not None for v in given) and not all(v is not None for v in given):
            raise ValueError(
                "GENVAULT_OIDC_ISSUER, GENVAULT_OIDC_CLIENT_ID and GENVAULT_OIDC_CLIENT_SECRET"
                " go together"
            )
        return self

    @property
    def oidc_enabled(self) -> bool:
        return self.oidc_issuer is not None

    @model_validator(mode="after")
    def _object_lock_pair(self) -> Settings:
        if (self.s3_object_lock_mode is None) != (self.s3_object_lock_days is None):
            raise ValueError(
                "GENVAULT_S3_OBJECT_LOCK_MODE and GENVAULT_S3_OBJECT_LOCK_DAYS go together"
            )
        return self

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty or short secret lets anyone mint webhook tokens and file links: refuse it
        # at start rather than run half-secured. Unset stays allowed here; require() decides.
        if value is None:
            return None
        raw = value.get_secret_value().encode()
        if raw in PUBLISHED_SECRETS:
            raise ValueError("this value is published in genvault's source; generate your own")
        if len(raw) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes (got {len(raw)});"
                " generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @field_validator("signing_key")
    @classmethod
    def _ed25519_seed(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        if len(signing_seed(value)) != 32:
            raise ValueError("must be the base64 of a 32-byte Ed25519 seed")
        return value

    def require(self, *names: str) -> None:
        """Stop with one line naming the first missing required setting."""
        for name in names:
            value = getattr(self, name)
            if value is None or value == ():
                raise ConfigError(f"{env_name(name)} is required (set it in the environment)")

    @property
    def secret(self) -> bytes:
        if self.secret_key is None:
            raise ConfigError(f"{env_name('secret_key')} is required (set it in the environment)")
        return self.secret_key.get_secret_value().encode()


def signing_seed(value: SecretStr) -> bytes:
    """The bytes of GENVAULT_SIGNING_KEY (standard or URL-safe base64); b"" when malformed."""
    text = value.get_secret_value().strip()
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return b""


def env_name(field_name: str) -> str:
    info = Settings.model_fields[field_name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"GENVAULT_{field_name.upper()}"


def load_settings(*, require_secrets: bool = True, **overrides: Any) -> Settings:
    """Read the settings once; a bad or missing value raises ConfigError with one line."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        name = env_name(field) if field in Settings.model_fields else field
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None
    if require_secrets:
        settings.require("secret_key")
    return settings
