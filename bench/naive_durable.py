"""The second baseline of bench/ingest.py: the durable receiver a user would write in ten lines.

Flask, one INSERT and its commit per request, a connection per thread, the same durability
settings as genvault (PostgreSQL: synchronous commit, the server's default; SQLite: WAL,
synchronous=NORMAL). It answers 200 only after its commit, as genvault does, but checks
nothing (no token, no job, no dedupe) and queues nothing.

NAIVE_DATABASE_URL=postgresql://... gunicorn -c deploy/gunicorn.conf.py --chdir bench \
    naive_durable:app
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

import psycopg
from flask import Flask, jsonify, request

# Read when gunicorn loads the app; bench/ingest.py imports this module only for create_table.
URL = os.environ.get("NAIVE_DATABASE_URL", "")
SQLITE = URL.startswith("sqlite:///")
app = Flask("naive")
_local = threading.local()


def _connect() -> Any:
    if SQLITE:
        conn = sqlite3.connect(URL.removeprefix("sqlite:///"), timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    return psycopg.connect(_libpq(URL))


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _conn() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = _connect()
    return conn


@app.post("/webhooks/<provider>/<track_id>")
def receive(provider: str, track_id: str):  # type: ignore[no-untyped-def]
    if not isinstance(request.get_json(force=True), dict):
        return jsonify({"error": "not an object"}), 400
    body = request.get_data(as_text=True)
    conn = _conn()
    placeholder = "?" if SQLITE else "%s"
    conn.execute(
        f"INSERT INTO naive_callbacks (provider, track_id, body) "
        f"VALUES ({placeholder}, {placeholder}, {placeholder})",
        (provider, track_id, body),
    )
    conn.commit()
    return jsonify({"status": "accepted"}), 200


@app.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


def create_table(url: str) -> None:
    """The receiver's table, made by the bench before gunicorn starts."""
    ddl = (
        "CREATE TABLE IF NOT EXISTS naive_callbacks (id {pk}, provider text NOT NULL,"
        " track_id text NOT NULL, body text NOT NULL,"
        " received_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(ddl.format(pk="INTEGER PRIMARY KEY"))
        return
    with psycopg.connect(_libpq(url)) as conn:
        conn.execute(ddl.format(pk="bigserial PRIMARY KEY"))
