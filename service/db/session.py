"""Engine and transactions, with the SQLite settings a multi-threaded service needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# An execution option: a connection that only reads (Database.read) begins deferred.
READ_ONLY = "genvault_read_only"


def make_engine(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # A server that is down must fail a request fast (and the request answer 503), not
        # hang it; pre-ping replaces connections a restart killed, so nothing needs restarting.
        connect_args = {"connect_timeout": 5, **kwargs.pop("connect_args", {})}
        return create_engine(url, connect_args=connect_args, **({"pool_pre_ping": True} | kwargs))
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, **({"pool_pre_ping": True} | kwargs))

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # Database.read(): a deferred transaction reads a WAL snapshot and never waits.
            conn.exec_driver_sql("BEGIN")
            return
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        # writes can fail with SQLITE_BUSY instead of waiting when another writer got there.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upsert_insert(session: Session, table: type[Any]) -> Any:
    """An INSERT of the session's dialect, which has on_conflict_do_nothing/_do_update."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


class Database:
    """The engine plus a way to run one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def on_commit(self, hook: Callable[[Session], None]) -> None:
        """Call ``hook`` after every commit of a session made here (tasks/wakeup.py)."""
        event.listen(self._sessions, "after_commit", hook)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for single reads on paths every request takes (the API key check).

        On SQLite every transaction takes the write lock up front (see make_engine); a read
        that did so would queue behind every writer and every other reader, so this one
        begins deferred: it reads a snapshot and never holds the lock. On PostgreSQL it runs
        in autocommit, so one SELECT is one round trip, without BEGIN and ROLLBACK around it.
        """
        options: dict[str, Any] = {READ_ONLY: True}
        if self.dialect == "postgresql":
            options["isolation_level"] = "AUTOCOMMIT"
        with self.engine.connect() as conn:
            yield conn.execution_options(**options)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
