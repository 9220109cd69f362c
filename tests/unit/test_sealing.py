"""Sealed endpoint credentials, and URL userinfo split off and masked."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from service.events.destinations import registry
from service.events.destinations.base import DestinationType, OpenContext, Target
from service.security import sealing

KEY = b"a server secret of some length"


def test_sealed_values_open_only_with_their_key_and_endpoint() -> None:
    sealed = sealing.seal(KEY, {"password": "hunter2"}, "ep_1")
    assert "hunter2" not in sealed and sealed.startswith("v1.")
    assert sealing.unseal(KEY, sealed, "ep_1") == {"password": "hunter2"}
    with pytest.raises(sealing.SealError):
        sealing.unseal(KEY, sealed, "ep_2")  # copied onto another endpoint
    with pytest.raises(sealing.SealError):
        sealing.unseal(b"another secret", sealed, "ep_1")
    # A fresh nonce every time.
    assert sealing.seal(KEY, {"password": "hunter2"}, "ep_1") != sealed


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    stream: str


def _never(target: Target, context: OpenContext) -> object:
    raise AssertionError("not opened here")


BROKER = DestinationType("redis", "a broker", _Config, None, _never)  # type: ignore[arg-type]


def test_url_userinfo_is_sealed_and_masked() -> None:
    config = {"url": "redis://user:hunter2@cache.example:6379/0", "stream": "s"}
    shown, hidden = registry.split_secrets(BROKER, config, {"password": "p"})
    assert shown == {"url": "redis://***@cache.example:6379/0", "stream": "s"}
    assert hidden == {"password": "p", "config.url": config["url"]}
    sealed = registry.seal(KEY, "ep_1", hidden)
    assert sealed is not None
    target = registry.target("ep_1", "redis", shown, sealed, KEY)
    assert target.config == config
    assert target.credentials == {"password": "p"}
    # No userinfo: nothing to seal, nothing masked.
    plain = {"url": "redis://cache.example/0", "stream": "s"}
    assert registry.split_secrets(BROKER, plain, None) == (plain, {})
