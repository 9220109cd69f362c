"""Databases for tests: a SQLite file per test, and a throwaway PostgreSQL database.

PostgreSQL comes from GENVAULT_TEST_POSTGRES_URL (default: the local server with trust
auth). Where none answers, PostgreSQL cases skip with the reason instead of failing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from service.db.migrate import upgrade
from service.db.session import Database, make_engine

PG_ADMIN_URL = os.environ.get(
    "GENVAULT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
_unreachable: str | None = None


def _admin_engine():  # type: ignore[no-untyped-def]
    return create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )


def _pg_reason() -> str | None:
    global _unreachable
    if _unreachable is None:
        try:
            import psycopg  # noqa: F401

            engine = _admin_engine()
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            _unreachable = ""
        except Exception as exc:
            where = make_url(PG_ADMIN_URL).render_as_string()
            _unreachable = f"PostgreSQL not reachable at {where}: {type(exc).__name__}"
    return _unreachable or None


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'genvault.db'}"


def create_pg_database() -> str:
    """A new empty database on the test server; drop it with drop_pg_database."""
    reason = _pg_reason()
    if reason:
        if os.environ.get("GENVAULT_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"genvault_t_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated-to-nothing database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database."""
    database = Database(make_engine(database_url))
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()
