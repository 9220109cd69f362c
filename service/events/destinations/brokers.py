"""What the broker adapters (rabbitmq, nats, redis) share: URLs, the address check, templates.

A broker host passes the same address policy as an HTTP endpoint (or an endpoint becomes a
way into the private network): the host is resolved once, every answer checked, and the
adapter connects to the checked address, as service/events/sender.py does for HTTP.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict

from service.events.destinations.base import (
    Destination,
    DestinationType,
    Failure,
    Message,
    OpenContext,
    Outcome,
)
from service.events.destinations.base import Target as Endpoint
from service.events.sender import check_address
from service.fetch.pinned import Resolver, system_resolver
from service.fetch.policy import AddressPolicy, DownloadRefused, IPAddress, Target

TEMPLATE_FIELDS = frozenset({"type", "project"})


class BrokerCredentials(BaseModel):
    """``username`` and ``password`` for a broker; a URL may carry userinfo instead."""

    model_config = ConfigDict(extra="forbid")

    username: str | None = None
    password: str | None = None


@dataclass(frozen=True)
class BrokerURL:
    """A broker URL split into what a client needs; the credentials kept apart."""

    scheme: str
    host: str  # as written (lowercased): TLS verifies the certificate against it
    port: int
    path: str  # vhost (AMQP) or database number (Redis), still percent-encoded
    username: str | None
    password: str | None

    @property
    def tls(self) -> bool:
        return self.scheme in {"amqps", "tls", "rediss"}


def parse_url(url: str, ports: Mapping[str, int]) -> BrokerURL:
    """Split ``url``; ValueError (never naming the password) if the scheme or host is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL (bad host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in ports:
        raise ValueError(f"scheme must be one of {', '.join(sorted(ports))}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("the URL has no host")
    return BrokerURL(
        scheme=scheme,
        host=host,
        port=port or ports[scheme],
        path=parts.path.removeprefix("/"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def check_template(template: str) -> str:
    """A routing key or subject template: only ``{type}`` and ``{project}`` may appear."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        raise ValueError("unbalanced braces in the template") from None
    unknown = names - TEMPLATE_FIELDS
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {{type}} or {{project}}")
    return template


def render(template: str, message: Message) -> str:
    return template.format(type=message.event_type, project=message.project)


def transport_headers(message: Message) -> dict[str, str]:
    """The Standard Webhooks headers plus the event type and content type, for routing."""
    return {
        **{k.lower(): v for k, v in message.headers.items()},
        "type": message.event_type,
        "content-type": message.content_type,
    }


class AddressRefused(Exception):
    """The broker's host may not be reached; ``outcome`` says why."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome


def checked_address(
    url: BrokerURL, addresses: AddressPolicy, resolve: Resolver = system_resolver
) -> IPAddress:
    """The address to connect to, every resolved answer checked; AddressRefused if not."""
    try:
        ip: IPAddress | None = ipaddress.ip_address(url.host)
    except ValueError:
        ip = None
    target = Target("http", url.host if ip is None else str(ip), url.port, ip, "/")
    try:
        return check_address(target, addresses, resolve)
    except DownloadRefused as exc:
        if exc.rule == "unresolvable":
            # A name that does not resolve now may resolve later (DNS hiccup, new record).
            raise AddressRefused(
                Outcome.failed(Failure.TRANSIENT, f"cannot resolve broker host {url.host!r}")
            ) from None
        raise AddressRefused(
            Outcome.failed(
                Failure.CONFIGURATION,
                f"broker host {url.host!r} refused by the {exc.rule} rule of the address policy",
            )
        ) from None


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret replaced, for error strings that quote a vendor message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def broker_type(
    name: str,
    summary: str,
    config: type[BaseModel],
    publisher: Callable[[Any, BrokerCredentials, OpenContext], Destination],
) -> DestinationType:
    """A broker's DestinationType: its config model, the shared credentials, and an opener
    that validates both and builds ``publisher(config, credentials, context)``."""

    def open_broker(target: Endpoint, context: OpenContext) -> Destination:
        return publisher(
            config.model_validate(dict(target.config)),
            BrokerCredentials.model_validate(dict(target.credentials)),
            context,
        )

    return DestinationType(
        name=name,
        summary=summary,
        config=config,
        credentials=BrokerCredentials,
        open=open_broker,
        secret_url_fields=("url",),
    )
