"""The endpoint types, and the per-process cache of opened destinations.

``http``, ``sqs``, ``sns`` and ``eventbridge`` always exist; ``rabbitmq``, ``nats`` and
``redis`` exist when their module (and its client library) imports. Each module exposes
``DESTINATION: DestinationType``.

Sealed credentials are one flat mapping: the type's credential fields, plus
``config.<field>`` for each config URL that carried userinfo (its stored config shows it
masked). ``Target`` is the config with those URLs put back, and the credentials.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from service.events.destinations.base import (
    Destination,
    DestinationType,
    Failure,
    Message,
    OpenContext,
    Outcome,
    Target,
)
from service.fetch.policy import DownloadRefused
from service.security import sealing

log = logging.getLogger(__name__)

BUILTIN = ("http", "sqs", "sns", "eventbridge")
OPTIONAL = ("rabbitmq", "nats", "redis")
MASK = "***"


@functools.cache
def types() -> dict[str, DestinationType]:
    """Every endpoint type this installation can send to, by name."""
    found: dict[str, DestinationType] = {}
    for name in (*BUILTIN, *OPTIONAL):
        try:
            module = importlib.import_module(f"service.events.destinations.{name}")
        except ImportError as exc:
            if name in BUILTIN:
                raise
            # Not installed here (the module, or its client library): the type is absent.
            log.debug("endpoint type %s unavailable: %s", name, exc)
            continue
        found[name] = module.DESTINATION
    return found


def get(name: str) -> DestinationType | None:
    return types().get(name)


def url_fields(kind: DestinationType) -> tuple[str, ...]:
    """Config fields holding a URL whose userinfo is a secret."""
    return tuple(dict.fromkeys((*kind.secret_url_fields, *_url_named(kind))))


def _url_named(kind: DestinationType) -> tuple[str, ...]:
    fields: Mapping[str, Any] = getattr(kind.config, "model_fields", {})
    return tuple(name for name in fields if name == "url")


def masked(url: str) -> str:
    """``scheme://***@host/…`` when the URL has userinfo; otherwise the URL itself."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))


def split_secrets(
    kind: DestinationType, config: Mapping[str, Any], credentials: Mapping[str, str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The config to store (userinfo masked), and what to seal (credentials, real URLs)."""
    shown = dict(config)
    hidden = {k: str(v) for k, v in (credentials or {}).items() if v is not None}
    if kind.name == "http":
        return shown, hidden  # its URL is refused with userinfo (and lives in its column)
    for name in url_fields(kind):
        value = shown.get(name)
        if isinstance(value, str) and masked(value) != value:
            hidden[f"config.{name}"] = value
            shown[name] = masked(value)
    return shown, hidden


def seal(secret: bytes, endpoint_id: str, hidden: Mapping[str, str]) -> str | None:
    return sealing.seal(secret, hidden, endpoint_id) if hidden else None


def target(
    endpoint_id: str,
    type_: str,
    config: Mapping[str, Any] | None,
    sealed: str | None,
    secret: bytes,
    *,
    url: str | None = None,
) -> Target:
    """What an adapter needs: the config with its real URLs, and the credentials."""
    hidden = sealing.unseal(secret, sealed, endpoint_id) if sealed else {}
    full = dict(config or {})
    if type_ == "http" and url is not None:
        full["url"] = url
    credentials: dict[str, str] = {}
    for key, value in hidden.items():
        if key.startswith("config."):
            full[key.removeprefix("config.")] = value
        else:
            credentials[key] = value
    return Target(endpoint_id, type_, full, credentials)


def fingerprint(target: Target) -> str:
    """Changes whenever the config or credentials do, so a PATCH re-opens the destination."""
    raw = json.dumps([target.type, dict(target.config), dict(target.credentials)], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class _Open:
    fingerprint: str
    destination: Destination


class Destinations:
    """One opened destination per endpoint and configuration, for the worker process.

    Adapters are shared by the worker's threads (an endpoint may have several attempts in
    flight), so each must be safe to publish from several threads. An adapter reconnects
    itself after a connection error; one that raises is closed and opened again next time.
    """

    def __init__(self, context: OpenContext) -> None:
        self.context = context
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()

    def publish(self, target: Target, message: Message) -> Outcome:
        kind = get(target.type)
        if kind is None:
            return Outcome.failed(
                Failure.CONFIGURATION, f"endpoint type {target.type!r} is not installed here"
            )
        try:
            destination = self._get(kind, target)
        except DownloadRefused as exc:
            return Outcome.failed(
                Failure.CONFIGURATION, f"refused by the address policy ({exc.rule})"
            )
        except Exception as exc:  # noqa: BLE001 - an adapter that cannot open is retried
            log.warning("cannot open %s destination: %s", target.type, type(exc).__name__)
            return Outcome.failed(Failure.TRANSIENT, f"cannot open: {type(exc).__name__}")
        try:
            return destination.publish(message)
        except Exception as exc:  # noqa: BLE001 - adapters classify; this is the last guard
            log.warning("%s publish raised %s", target.type, type(exc).__name__)
            self._drop(target.endpoint_id, destination)
            return Outcome.failed(Failure.TRANSIENT, f"publish failed: {type(exc).__name__}")

    def _get(self, kind: DestinationType, target: Target) -> Destination:
        mark = fingerprint(target)
        with self._lock:
            held = self._open.get(target.endpoint_id)
            if held is not None and held.fingerprint == mark:
                return held.destination
            if held is not None:
                _close(held.destination)
            destination = kind.open(target, self.context)
            self._open[target.endpoint_id] = _Open(mark, destination)
            return destination

    def _drop(self, endpoint_id: str, destination: Destination) -> None:
        with self._lock:
            held = self._open.get(endpoint_id)
            if held is not None and held.destination is destination:
                del self._open[endpoint_id]
        _close(destination)

    def close(self) -> None:
        with self._lock:
            held, self._open = list(self._open.values()), {}
        for item in held:
            _close(item.destination)


def _close(destination: Destination) -> None:
    try:
        destination.close()
    except Exception as exc:  # noqa: BLE001 - closing at shutdown must not stop the others
        log.warning("closing a destination raised %s", type(exc).__name__)
