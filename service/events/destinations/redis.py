"""Redis Streams: one XADD per event, done when Redis returns the entry id.

Fields: ``body`` and each header (webhook-id, webhook-timestamp, webhook-signature, type,
content-type). ``maxlen`` trims approximately (``~``), which Redis does cheaply. XADD makes
the stream if it does not exist, as consumers of streams expect; whether an entry survives a
restart is the Redis server's AOF and replica settings, not something XADD reports.
redis-py's client is thread-safe: the worker's threads share its pool of connections.
"""

from __future__ import annotations

import threading

import redis
import redis.exceptions as errors
from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.events.destinations.base import (
    Failure,
    Message,
    OpenContext,
    Outcome,
)
from service.events.destinations.brokers import (
    AddressRefused,
    BrokerCredentials,
    BrokerURL,
    broker_type,
    checked_address,
    parse_url,
    scrub,
    transport_headers,
)

PORTS = {"redis": 6379, "rediss": 6379}
# Redis error prefixes that no retry will fix (the rest are retried on the schedule).
CONFIGURATION_ERRORS = ("WRONGTYPE", "NOPERM", "NOAUTH", "WRONGPASS")


class RedisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str  # redis:// or rediss://, optional userinfo and /db
    # The key as written, no template: braces in a key are Redis Cluster's hash tags.
    stream: str = Field(min_length=1)
    maxlen: int | None = Field(default=None, gt=0)  # approximate trimming when set

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        url = parse_url(value, PORTS)
        if url.path and not url.path.isdigit():
            raise ValueError("the path must be a database number, e.g. redis://host:6379/0")
        return value


class RedisStream:
    """Publishes one endpoint's events; ``close()`` at worker shutdown."""

    def __init__(
        self, config: RedisConfig, credentials: BrokerCredentials, context: OpenContext
    ) -> None:
        self._config = config
        self._url = parse_url(config.url, PORTS)
        self._username = credentials.username or self._url.username
        self._password = credentials.password or self._url.password
        self._context = context
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()  # the worker's threads make one client, not several

    def publish(self, message: Message) -> Outcome:
        fields: dict[str | bytes, str | bytes] = {"body": message.body}
        fields.update(transport_headers(message))
        try:
            entry = self._connected().xadd(
                self._config.stream,
                fields,  # type: ignore[arg-type]  # redis-py's FieldT is invariant over dict keys
                maxlen=self._config.maxlen,
                approximate=True,
            )
        except AddressRefused as exc:
            return exc.outcome
        except errors.RedisError as exc:
            if isinstance(exc, errors.ConnectionError):
                self.close()  # checked again, and reconnected, on the next publish
            error = scrub(_describe(exc, self._url, self._context.timeout), [self._password])
            return Outcome.failed(_kind(exc), error)
        return Outcome.success(receipt=entry.decode() if isinstance(entry, bytes) else str(entry))

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def client(self) -> redis.Redis | None:
        """The kept client (tests check it is reused)."""
        return self._client

    def _connected(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> redis.Redis:
        url = self._url
        address = checked_address(url, self._context.addresses)
        timeout = self._context.timeout
        return redis.Redis(
            # The checked address; over TLS the name, whose every address was just checked,
            # since redis-py verifies the certificate against the host it connects to.
            host=url.host if url.tls else str(address),
            port=url.port,
            db=int(url.path or 0),
            username=self._username,
            password=self._password,
            ssl=url.tls,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One try per attempt: retries belong to the delivery schedule.
            retry=Retry(NoBackoff(), 0),
            client_name="genvault-events",
        )


def _kind(exc: errors.RedisError) -> Failure:
    if isinstance(exc, errors.AuthenticationError | errors.AuthorizationError):
        return Failure.CONFIGURATION
    if isinstance(exc, errors.ResponseError) and str(exc).startswith(CONFIGURATION_ERRORS):
        return Failure.CONFIGURATION
    # Refused, reset, timed out, loading, busy, OOM, read-only during a failover.
    return Failure.TRANSIENT


def _describe(exc: errors.RedisError, url: BrokerURL, timeout: float) -> str:
    host = url.host
    if isinstance(exc, errors.AuthenticationError | errors.AuthorizationError):
        return f"server {host!r} refused the credentials: {exc}"
    if isinstance(exc, errors.TimeoutError):
        return f"no answer from {host!r} within {timeout:g} s"
    if isinstance(exc, errors.ConnectionError):
        return f"cannot connect to server {host!r}:{url.port} ({type(exc).__name__})"
    if isinstance(exc, errors.ResponseError):
        return f"server {host!r} refused the XADD: {exc}"
    return f"XADD to server {host!r} failed: {type(exc).__name__}"


DESTINATION = broker_type(
    "redis",
    "XADD to a Redis stream; succeeded when Redis returns the entry id",
    RedisConfig,
    RedisStream,
)
