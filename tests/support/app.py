"""A wired genvault (real database, file archive) and its Flask test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings, load_settings
from service.db.migrate import upgrade
from service.wiring import Container, build

TOKEN = "test-token"
SECRET = "test-secret-0123456789abcdef0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "archive_url": f"file://{tmp_path / 'archive'}",
        "public_url": "http://127.0.0.1:9",
        "secret_key": SECRET,
        "api_tokens": (TOKEN,),
        "modelslab_api_key": "ml-test-key",
        "modelslab_enterprise_api_key": "ml-enterprise-test-key",
        "aimlapi_api_key": "aiml-test-key",
        "log_json": True,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def container(database_url: str, tmp_path: Path) -> Iterator[Container]:
    c = build(make_settings(database_url, tmp_path))
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def client(container: Container) -> FlaskClient:
    return create_app(container=container).test_client()
