"""``column IN (values)`` as one parameter on PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, any_, literal
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute


def among(
    column: ColumnElement[Any] | QueryableAttribute[Any], values: Sequence[Any], dialect: str
) -> ColumnElement[bool]:
    """``column`` is one of ``values``.

    On PostgreSQL ``column = ANY(array)``: one parameter, so the statement's text is the same
    for any number of values. ``IN`` takes a parameter per value, and psycopg converts a
    statement of more than 50 parameters afresh every time and never prepares it: the
    output rows of a list of 50 jobs took 0.9-1.1 ms to read this way, 1.1-1.5 ms with IN
    (in process, four A/B rounds). SQLite has no arrays: IN there.
    """
    if dialect == "postgresql":
        return column == any_(literal(list(values), ARRAY(column.type)))
    return column.in_(values)
