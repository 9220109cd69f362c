"""Word search over jobs (the gallery's ``q``), read off an index on both databases.

A job's searchable text is its prompt (``params.prompt``) and every string and number in its
metadata (values, not keys). A search finds the jobs that contain every word of the query,
whole words, any case; words written together in quotes or joined by punctuation ("o-17")
must appear together in that order.

- PostgreSQL: the GIN index ``ix_jobs_search`` over ``PG_VECTOR`` (migration 0009), queried
  with ``plainto_tsquery('simple', …)`` (every word, no operators; never fails on input).
- SQLite: the FTS5 table ``jobs_fts`` kept in step by triggers (migration 0009), queried with
  ``MATCH`` and every word quoted (``fts5_query``), so user input is never FTS syntax.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, column, false, literal_column, select, table, text

PG_INDEX = "ix_jobs_search"
# The index expression, written as alembic normalises what PostgreSQL prints back
# (pg_get_indexdef), so its comparison of the model with the database sees the same text.
# A JSON string may hold \u0000, which PostgreSQL's text cannot: decoding it would fail the
# job's INSERT, so each \u0000 escape becomes \u0020 (a space) first. Same length and shape,
# so the JSON stays valid even where the backslash was itself escaped ("\\u0000").
PG_VECTOR = (
    "(to_tsvector('simple'::regconfig, COALESCE(replace(params::text, '\\u0000'::text,"
    " '\\u0020'::text)::json ->> 'prompt'::text, ''::text))"
    " || json_to_tsvector('simple'::regconfig, replace(metadata::text, '\\u0000'::text,"
    " '\\u0020'::text)::json, '[\"string\", \"numeric\"]'::jsonb))"
)

SQLITE_TABLE = (
    "CREATE VIRTUAL TABLE jobs_fts USING fts5("
    "job_id, body, tokenize = 'unicode61 remove_diacritics 2')"
)
# The prompt, then the metadata's scalar values (json_tree: decoded, so "café" is a word
# even though the column holds "caf\u00e9"). json_valid guards a row that is not JSON.
_SQLITE_BODY = (
    "coalesce(CASE WHEN json_valid(new.params) THEN json_extract(new.params, '$.prompt') END, '')"
    " || ' ' || coalesce(CASE WHEN json_valid(new.metadata) THEN (SELECT group_concat(atom, ' ')"
    " FROM json_tree(new.metadata) WHERE atom IS NOT NULL AND type IN ('text', 'integer', 'real'))"
    " END, '')"
)
# A job's row found through the index on job_id (a single hex token), not a scan.
_SQLITE_FORGET = "DELETE FROM jobs_fts WHERE jobs_fts MATCH 'job_id : \"' || old.id || '\"';"
# Constants only, no input: S608 does not apply.
_SQLITE_ADD = f"INSERT INTO jobs_fts (job_id, body) VALUES (new.id, {_SQLITE_BODY});"  # noqa: S608
SQLITE_TRIGGER_NAMES = ("jobs_fts_insert", "jobs_fts_update", "jobs_fts_delete")
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN {_SQLITE_ADD} END",
    "CREATE TRIGGER jobs_fts_update AFTER UPDATE OF id, params, metadata ON jobs"
    f" BEGIN {_SQLITE_FORGET} {_SQLITE_ADD} END",
    f"CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN {_SQLITE_FORGET} END",
)
SQLITE_BACKFILL = (
    f"INSERT INTO jobs_fts (job_id, body) SELECT new.id, {_SQLITE_BODY} FROM jobs AS new"  # noqa: S608
)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """For alembic's comparison: FTS5 tables and their shadow tables are not in the models."""
    return not (type_ == "table" and name is not None and name.startswith("jobs_fts"))


def fts5_query(q: str) -> str | None:
    """Every word of ``q`` as a quoted FTS5 string (all must match); None if it has none."""
    words = [w for w in q.split() if any(ch.isalnum() for ch in w)]
    if not words:
        return None
    return "body : (" + " ".join('"' + w.replace('"', '""') + '"' for w in words) + ")"


def pg_tsquery(q: str) -> Any:
    return text("plainto_tsquery('simple', :search_q)").bindparams(search_q=q)


def matches(dialect: str, q: str) -> ColumnElement[bool]:
    """A WHERE clause on ``jobs``: the job contains the words of ``q``."""
    from service.db.models import Job

    if dialect == "postgresql":
        return literal_column(PG_VECTOR).bool_op("@@")(pg_tsquery(q))
    query = fts5_query(q)
    if query is None:
        return false()
    fts = table("jobs_fts", column("job_id"))
    return Job.id.in_(
        select(fts.c.job_id).where(literal_column("jobs_fts").bool_op("MATCH")(query))
    )
