"""Which pages an SQLite commit writes: its write-ahead log read frame by frame.

A commit in WAL mode appends every page it changed, whole, to the log: so the pages a write
puts there say what it costs on disk and at the next checkpoint (which copies them back into
the database file), whatever the machine's load. Unlike requests per second under wrk, the
count is the same from run to run. bench/ingest_write.py prints it per callback for
genvault's write and the naive receiver's.

The log is a 32-byte header, then frames: a 24-byte header (the page number first, as a
big-endian 32-bit integer) and the page (https://www.sqlite.org/fileformat.html#the_write_ahead_log).
"""

from __future__ import annotations

import sqlite3
import struct
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_WAL_HEADER = 32
_FRAME_HEADER = 24


def frames(wal: Path, page_size: int) -> Counter[int]:
    """How many times each page number appears in the log ``wal``."""
    data = wal.read_bytes() if wal.exists() else b""
    pages: Counter[int] = Counter()
    for offset in range(_WAL_HEADER, len(data) - _FRAME_HEADER + 1, _FRAME_HEADER + page_size):
        (page,) = struct.unpack_from(">I", data, offset)
        pages[page] += 1
    return pages


def owners(conn: sqlite3.Connection) -> dict[int, str]:
    """Page number -> the table or index it belongs to; empty where SQLite was built
    without the dbstat table. Page 1 belongs to sqlite_schema, and also holds the file's
    header, which a commit rewrites whenever the file grows."""
    try:
        rows = conn.execute("SELECT pageno, name FROM dbstat").fetchall()
    except sqlite3.OperationalError:  # no such table: dbstat
        return {}
    return {int(page): str(name) for page, name in rows}


def per_write(
    conn: sqlite3.Connection, write: Callable[[], object], count: int
) -> dict[str, float]:
    """Pages the log gains per call of ``write`` (each its own commit, on ``conn``), by the
    table or index they belong to, over ``count`` calls.

    ``conn`` must be the connection ``write`` commits on: its automatic checkpoints are
    turned off for the count (one would empty the log), then back on.
    """
    # The log lies beside the database file, which the connection itself names.
    path = next(
        Path(file) for _, name, file in conn.execute("PRAGMA database_list") if name == "main"
    )
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    (previous,) = conn.execute("PRAGMA wal_autocheckpoint").fetchone()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.execute("PRAGMA wal_autocheckpoint=0").fetchall()
    try:
        for _ in range(count):
            write()
        written = frames(path.with_name(path.name + "-wal"), page_size)
        names = owners(conn)
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint={int(previous)}").fetchall()
    by_owner: Counter[str] = Counter()
    for page, times in written.items():
        by_owner[names.get(page, "(not known)")] += times
    return {name: times / count for name, times in by_owner.most_common()}
