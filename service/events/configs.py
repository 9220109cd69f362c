"""An endpoint's type, config and credentials checked against the type's models (422 naming
the field), its hosts against the address policy, and its secrets split from what is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from service.errors import FieldError, InvalidRequest
from service.events import endpoints
from service.events.destinations import registry
from service.events.destinations.base import DestinationType
from service.fetch.pinned import Resolver, system_resolver
from service.fetch.policy import AddressPolicy

# Where a broker URL without a port connects.
DEFAULT_PORTS = {
    "amqp": 5672,
    "amqps": 5671,
    "nats": 4222,
    "tls": 4222,
    "redis": 6379,
    "rediss": 6379,
}


def kind_of(name: str) -> DestinationType:
    kind = registry.get(name)
    if kind is None:
        names = ", ".join(registry.types())
        raise InvalidRequest([FieldError("type", f"must be one of: {names}")])
    return kind


def validated(model: type[Any], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``values`` through a type's pydantic model; a 422 naming ``where.field`` otherwise."""
    try:
        checked: BaseModel = model.model_validate(dict(values))
    except ValidationError as exc:
        errors = [
            FieldError(".".join([where, *(str(p) for p in e["loc"])]), e["msg"])
            for e in exc.errors()
        ]
        raise InvalidRequest(errors) from None
    return checked.model_dump(mode="json", exclude_none=True)


def check_hosts(
    kind: DestinationType,
    config: Mapping[str, Any],
    addresses: AddressPolicy,
    resolve: Resolver = system_resolver,
) -> None:
    """Broker hosts and AWS endpoint_urls pass the address policy, as HTTP URLs do."""
    endpoint_url = config.get("endpoint_url")
    if isinstance(endpoint_url, str):
        endpoints.check_url(endpoint_url, addresses, resolve, field_name="config.endpoint_url")
    for name in registry.url_fields(kind):
        value = config.get(name)
        if not isinstance(value, str):
            continue
        try:
            parts = urlsplit(value)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise InvalidRequest([FieldError(f"config.{name}", "must name a host")])
        endpoints.check_host(parts.hostname, port, addresses, resolve, field_name=f"config.{name}")


def checked(
    type_: str,
    config: Mapping[str, Any] | None,
    credentials: Mapping[str, Any] | None,
    addresses: AddressPolicy,
    *,
    format: str,
    links: str,
) -> endpoints.Where:
    """A non-http endpoint's destination, checked, with its secrets split off."""
    kind = kind_of(type_)
    shown = validated(kind.config, config or {}, "config")
    check_hosts(kind, shown, addresses)
    secrets: dict[str, str] = {}
    if credentials is not None:
        if kind.credentials is None:
            raise InvalidRequest([FieldError("credentials", f"{type_} endpoints take none")])
        secrets = {
            k: str(v) for k, v in validated(kind.credentials, credentials, "credentials").items()
        }
    masked, hidden = registry.split_secrets(kind, shown, secrets)
    return endpoints.Where(type_, None, masked, hidden, format, links)


def describe() -> list[dict[str, Any]]:
    """Each type's fields, from its models (GET /v1/endpoint-types)."""
    return [
        {
            "type": kind.name,
            "summary": kind.summary,
            "config": _fields(kind.config),
            "credentials": _fields(kind.credentials) if kind.credentials is not None else [],
        }
        for kind in registry.types().values()
    ]


def _fields(model: type[Any]) -> list[dict[str, Any]]:
    schema: dict[str, Any] = model.model_json_schema()
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        kinds = [p.get("type") for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
        out.append(
            {
                "name": name,
                "type": kinds[0] if kinds else "string",
                "required": name in required,
                "description": prop.get("description"),
                "default": prop.get("default"),
            }
        )
    return out
