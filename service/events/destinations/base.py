"""The port every destination adapter implements, and what one delivery attempt returns.

The delivery task (service.events.delivery) builds one ``Message`` per attempt, the same
body bytes and Standard Webhooks headers for every transport, and hands it to the adapter
of the endpoint's type. The adapter publishes and says how it went as an ``Outcome``; it
never raises for a failed publish (errors are classified here, at the vendor border).

Adapters keep their connections per worker process (a new RabbitMQ connection costs about
ten times a publish on a kept one): ``Destinations`` caches one adapter instance per
endpoint and configuration, and closes them at shutdown.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.fetch import policy
from service.fetch.pinned import NoAddresses, Resolver, checked_address, system_resolver


@dataclass(frozen=True)
class Message:
    """One event as it goes out, on any transport."""

    event_id: str  # also the dedupe id: SQS FIFO MessageDeduplicationId, Nats-Msg-Id
    event_type: str  # e.g. job.archived (templates take {type})
    project: str  # templates take {project}
    job_id: str | None  # SQS FIFO MessageGroupId; CloudEvents subject
    body: bytes  # exactly the bytes the signature covers
    # webhook-id, webhook-timestamp, webhook-signature (Standard Webhooks), plus
    # content-type; transports without headers carry them as attributes or fields.
    headers: Mapping[str, str]
    content_type: str = "application/json"


class Failure(enum.StrEnum):
    """Why an attempt did not succeed: decides the retry and the auto-disable."""

    TRANSIENT = "transient"  # timeout, reset, throttled, broker down: retry on the schedule
    CONFIGURATION = "configuration"  # missing queue/exchange/stream, refused credentials,
    # unroutable: retried, but counts toward auto-disable sooner, and says so on the endpoint
    GONE = "gone"  # the receiver said it is gone for good (HTTP 410): disable at once


@dataclass(frozen=True)
class Outcome:
    ok: bool
    # For the attempt log: an HTTP status, or None for other transports.
    status: int | None = None
    # What the broker said on success (SQS MessageId, NATS stream sequence, XADD entry id).
    receipt: str | None = None
    error: str | None = None  # never carries a secret
    failure: Failure | None = None
    retry_after: float | None = None

    @classmethod
    def success(cls, receipt: str | None = None, status: int | None = None) -> Outcome:
        return cls(True, status=status, receipt=receipt)

    @classmethod
    def failed(
        cls,
        failure: Failure,
        error: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> Outcome:
        return cls(False, status=status, error=error, failure=failure, retry_after=retry_after)


@dataclass(frozen=True)
class Target:
    """An endpoint as an adapter needs it: its type, config and decrypted credentials."""

    endpoint_id: str
    type: str
    config: Mapping[str, Any]
    credentials: Mapping[str, str] = field(default_factory=dict)


class Destination(Protocol):
    """One endpoint's publisher; kept for the life of the worker process."""

    def publish(self, message: Message) -> Outcome: ...

    def close(self) -> None: ...


class Opener(Protocol):
    """Builds a type's publisher for one endpoint (connections are made lazily or here)."""

    def __call__(self, target: Target, context: OpenContext) -> Destination: ...


class AddressCheck(policy.AddressPolicy):
    """The events address policy (GENVAULT_EVENTS_ALLOWED_NETWORKS) with its resolver.

    Broker hosts and AWS endpoint_urls pass it as HTTP endpoints do, or an endpoint would be
    a way into the private network. Both checks raise ``DownloadRefused`` naming the rule.
    """

    def __init__(
        self,
        allowed_networks: Sequence[policy.IPNetwork] = (),
        resolve: Resolver = system_resolver,
    ) -> None:
        super().__init__(allowed_networks)
        self.resolve = resolve

    def check_host(self, host: str, port: int) -> policy.IPAddress:
        """The checked address to connect to for ``host:port``."""
        return check_url(self, f"http://{_bracketed(host)}:{port}/")

    def check_url(self, url: str) -> policy.IPAddress:
        """An http(s) URL without userinfo (an AWS endpoint_url), resolved and checked."""
        return check_url(self, url)


def check_url(addresses: policy.AddressPolicy, url: str) -> policy.IPAddress:
    """The one checked address of an http(s) URL; DownloadRefused naming the rule."""
    resolve = addresses.resolve if isinstance(addresses, AddressCheck) else system_resolver
    target = policy.parse_target(url)
    try:
        return checked_address(target, addresses, resolve)
    except (OSError, UnicodeError, NoAddresses):
        raise policy.DownloadRefused("unresolvable", target.host) from None


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class OpenContext:
    """What every adapter may need from the settings, passed in by the wiring."""

    # Broker hosts and AWS endpoint_urls pass the same address policy as HTTP endpoints:
    # ``addresses.check_host(host, port)`` raises DownloadRefused (naming the rule) when
    # refused, and answers the one checked address to connect to.
    addresses: policy.AddressPolicy  # an AddressCheck in the worker (it carries the resolver)
    timeout: float  # seconds for one attempt, connect to confirmation
    user_agent: str = "genvault"


@dataclass(frozen=True)
class DestinationType:
    """One endpoint type: its exact name, its config and credentials models, its opener.

    ``config`` and ``credentials`` are pydantic models (extra fields forbidden) that the API
    validates bodies with (422 naming the field) and GET /v1/endpoint-types describes.
    """

    name: str  # http sqs sns eventbridge rabbitmq nats redis
    summary: str
    config: type[Any]  # a pydantic BaseModel subclass
    credentials: type[Any] | None  # None: the type takes no credentials
    open: Opener
    # Config fields that hold a URL whose userinfo is a secret (stored encrypted, masked).
    secret_url_fields: tuple[str, ...] = ()
