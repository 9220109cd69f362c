"""Waking idle workers the moment work is queued, from any process on the machine.

A worker sleeps between claims (``worker_poll_interval``, the safety net). A Wakeup cuts
that sleep short when a transaction that queued a task commits:

- PostgreSQL: each worker has one connection LISTENing on a channel; a commit that queued
  a task (see TaskQueue.mark_enqueued) has a NOTIFY sent right after it.
- SQLite: each worker binds a Unix datagram socket in a directory named after the database
  file; a commit that queued a task has one byte sent to every socket there.

Either way a process's sender thread sends at most once per few milliseconds, for however
many commits queued work meanwhile.

Both sides block in the kernel: nothing polls while idle. The notification follows the
commit, so a woken worker always finds the task.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import select
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.db.session import Database
from service.tasks.queue import ENQUEUED

log = logging.getLogger(__name__)

CHANNEL = "genvault_tasks"
# At most one wake-up round per process per this long. A round is a NOTIFY (a transaction
# of its own) or a datagram per worker: at 5 ms, under webhook load, the sender thread cost
# each webhook 57 us of CPU besides the database's (bench/ingest.py). A worker that is busy
# does not need waking (it claims again while work is left), and a lone callback after a
# quiet spell is still sent at once: only wake-ups during a burst wait, 25 ms at worst.
WAKE_INTERVAL = 0.025
# How often a blocked listener looks at its stop event; it is woken by the kernel otherwise.
_STOP_CHECK_SECONDS = 1.0
# How long a sender waits after a failed round (the database restarting, say).
_RETRY_SECONDS = 0.5


class Wakeup(Protocol):
    def notify(self) -> None:
        """Tell every listening worker that work was queued (after the commit)."""

    def listen(self, on_wake: Callable[[], None], stop: threading.Event) -> None:
        """Call ``on_wake`` at each notification until ``stop`` is set (blocks: a thread).

        Also once as soon as it listens, for what was queued before.
        """

    def close(self) -> None:
        """Free what notify() holds."""


class _Sender:
    """A process's one wake-up sender: a thread that runs ``send_round`` at most once per
    ``min_interval``, for however many notify() calls came meanwhile.

    notify() only sets a flag, so the thread that committed (a webhook's) pays nothing for
    the wake-up, and a burst of commits costs a few rounds, not one each. A notify() just
    before close() is still sent: its commit happened. ``finish`` frees what the rounds
    opened, on the sender thread, when it stops; ``disown`` drops it without closing, in a
    forked child, where it is the parent's.
    """

    def __init__(
        self,
        send_round: Callable[[], None],
        finish: Callable[[], None],
        min_interval: float,
        disown: Callable[[], None] = lambda: None,
    ) -> None:
        self.send_round = send_round
        self.finish = finish
        self.disown = disown
        self.min_interval = min_interval
        self._closed = False
        self._after_fork()
        _SENDERS.add(self)

    def _after_fork(self) -> None:
        """A fresh start (and, in a forked child, the parent's state left behind).

        A child forked after a notify() (gunicorn's preload_app, a fork from a worker)
        inherits ``_thread`` but not the thread itself, and notify() would set a flag that
        nobody reads: its workers would wake only at their next poll. Its locks may also have
        been held by the parent's sender at the fork. So the child starts from scratch.
        """
        self._wanted = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def notify(self) -> None:
        self._wanted.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._run, name="task-notify", daemon=True
                    )
                    self._thread.start()

    def close(self) -> None:
        self._closed = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                pause = self.min_interval  # what is queued meanwhile shares the next round
                try:
                    self.send_round()
                except Exception as exc:  # noqa: BLE001 - workers still poll; try again later
                    log.warning("waking workers failed: %s", exc)
                    pause = _RETRY_SECONDS
                if self._closed:
                    # Stop only after a round that nothing came in during. close() wakes
                    # this thread too, so the workers may wake once more for nothing.
                    if not self._wanted.is_set():
                        break
                    continue
                time.sleep(pause)
        finally:
            self.finish()


# Every live sender, for the fork handler below (weak: a closed Wakeup is not kept alive).
_SENDERS: weakref.WeakSet[_Sender] = weakref.WeakSet()


def _reset_senders_in_child() -> None:
    for sender in list(_SENDERS):
        sender.disown()
        sender._after_fork()


os.register_at_fork(after_in_child=_reset_senders_in_child)


class _Notifies:
    """notify() and close() of a Wakeup whose sending is its _Sender's."""

    _sender: _Sender

    def notify(self) -> None:
        self._sender.notify()

    def close(self) -> None:
        self._sender.close()


class PostgresWakeup(_Notifies):
    """NOTIFY after the commit, from one background connection; LISTEN in each worker.

    Not a trigger, nor NOTIFY inside the enqueuing transaction: PostgreSQL serialises the
    commits of notifying transactions on one global lock, held through the WAL flush, which
    defeated group commit and capped webhook ingest at one flush at a time (bench/ingest.py).
    The process's _Sender sends the NOTIFY at most once per ``min_interval`` (the wake-up
    is that much later at worst): under webhook load each NOTIFY was a commit of its own, a
    third of the database's work.
    """

    def __init__(
        self, database_url: str, channel: str = CHANNEL, min_interval: float = WAKE_INTERVAL
    ) -> None:
        # psycopg wants a libpq URL, without SQLAlchemy's "+driver".
        self.conninfo = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        self.channel = channel
        self._conn: Any = None  # the sender thread's own connection
        self._sender = _Sender(self._send_round, self._finish, min_interval, self._disown)

    def _send_round(self) -> None:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            self._conn.execute("SELECT pg_notify(%s, '')", (self.channel,))
        except Exception:
            self._finish()  # a fresh connection next round
            raise

    def _finish(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a connection the server dropped
                self._conn.close()
            self._conn = None

    def _disown(self) -> None:
        # The parent's connection: closing it here would end the parent's session (psycopg
        # does not close it when a forked child drops it).
        self._conn = None

    def listen(self, on_wake: Callable[[], None], stop: threading.Event) -> None:
        import psycopg

        backoff = 0.5
        while not stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    backoff = 0.5
                    on_wake()  # whatever was queued while we were not listening
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=_STOP_CHECK_SECONDS):
                            on_wake()
            except Exception as exc:  # noqa: BLE001 - the database may be restarting
                log.warning("task wake-up listener lost its connection: %s", exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)


class SocketDirWakeup(_Notifies):
    """Unix datagram sockets in one directory per SQLite database file.

    The process's _Sender scans the directory and sends, at most one round per
    ``min_interval``. Sending from the webhook's request thread cost each accepted callback
    a directory scan and a datagram per worker, and woke every worker for a claim of its
    own, under load one per callback.
    """

    def __init__(self, directory: Path, min_interval: float = WAKE_INTERVAL) -> None:
        self.directory = directory
        self._sock: socket.socket | None = None  # the sender thread's own
        # In a forked child the socket is a copy: closing it leaves the parent's open.
        self._sender = _Sender(self._send_round, self._finish, min_interval, self._finish)

    @classmethod
    def for_database(cls, database_path: str) -> SocketDirWakeup:
        # Socket paths are limited to ~100 bytes, so the directory is short and lives in the
        # temp dir, named by a hash of the database file's real path.
        digest = hashlib.sha256(os.path.realpath(database_path).encode()).hexdigest()[:16]
        return cls(Path(tempfile.gettempdir()) / f"genvault-wake-{digest}")

    def _send_round(self) -> None:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return  # no worker has ever listened
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
        sock = self._sock
        for entry in entries:
            if not entry.name.endswith(".sock"):
                continue
            try:
                sock.sendto(b"!", entry.path)
            except BlockingIOError:
                pass  # its queue is full: it has wake-ups pending already
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    # Its worker died without cleaning up: remove the stale socket.
                    Path(entry.path).unlink(missing_ok=True)

    def _finish(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def listen(self, on_wake: Callable[[], None], stop: threading.Event) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(path))
            sock.setblocking(False)
            on_wake()  # whatever was queued before we were listening
            while not stop.is_set():
                readable, _, _ = select.select([sock], [], [], _STOP_CHECK_SECONDS)
                if not readable:
                    continue
                try:
                    while sock.recv(64):
                        pass
                except BlockingIOError:
                    pass  # drained: one wake-up for however many notifications
                on_wake()
        finally:
            sock.close()
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only when no other worker listens there


def build_wakeup(database_url: str) -> Wakeup | None:
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresWakeup(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return SocketDirWakeup.for_database(url.database)
    return None


def notify_on_commit(db: Database, wakeup: Wakeup) -> None:
    """After a commit that queued a task, wake the workers."""

    def after_commit(session: Session) -> None:
        if session.info.pop(ENQUEUED, False):
            try:
                wakeup.notify()
            except OSError:
                log.warning("waking workers failed; they will find the task on their next poll")

    db.on_commit(after_commit)
