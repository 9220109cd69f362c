"""The migrations build exactly the schema the models declare, and 0007 keeps old data."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.db import pending_callbacks, search
from service.db.migrate import upgrade
from service.db.models import Base
from service.db.session import make_engine

_JOB = (
    "INSERT INTO jobs (id, {project}track_id, endpoint, status, params, metadata,"
    " idempotency_key, created_at, updated_at, submit_attempts) VALUES ('{id}', {slug}'t{id}',"
    " 'modelslab/text2img', 'archived', '{{}}', '{{}}', 'same-key', CURRENT_TIMESTAMP,"
    " CURRENT_TIMESTAMP, 0)"
)


def _job(job_id: str, project: str | None = None) -> str:
    return _JOB.format(
        id=job_id,
        project="project, " if project else "",
        slug=f"'{project}', " if project else "",
    )


def test_migrations_match_the_models_and_keep_what_existed(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine, "0006")
        with engine.begin() as conn:
            conn.execute(text(_job("j1")))
        upgrade(engine)
        with engine.connect() as conn:
            # FTS5 tables (SQLite's search index, migration 0009) are outside the models.
            # So is SQLite's floor of pending callbacks (0012), which replaces the index of
            # pending callbacks there: the models build that one on PostgreSQL only (ddl_if).
            def include_name(name: str | None, type_: str, parents: Any) -> bool:
                return search.include_name(name, type_, parents) and pending_callbacks.include_name(
                    name, type_, parents
                )

            def include_object(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
                sqlite = conn.dialect.name == "sqlite"
                return not (sqlite and type_ == "index" and name == "ix_callbacks_pending")

            context = MigrationContext.configure(
                conn, opts={"include_name": include_name, "include_object": include_object}
            )
            with warnings.catch_warnings():
                # The PostgreSQL-only expression index (ddl_if) is compared on PostgreSQL;
                # alembic cannot reflect expression indexes on SQLite and says so.
                warnings.filterwarnings("ignore", f".*expression-based index '{search.PG_INDEX}'")
                assert compare_metadata(context, Base.metadata) == []
        with engine.begin() as conn:
            # What existed belongs to the default project.
            assert conn.execute(text("SELECT project FROM jobs")).scalar_one() == "default"
            conn.execute(
                text(
                    "INSERT INTO projects (slug, name, created_at)"
                    " VALUES ('b', 'B', CURRENT_TIMESTAMP)"
                )
            )
            # An Idempotency-Key is unique within a project, not across projects.
            conn.execute(text(_job("j2", "b")))
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(_job("j3", "b")))
    finally:
        engine.dispose()
