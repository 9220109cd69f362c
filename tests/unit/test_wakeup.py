"""Wake-ups: a burst of commits wakes the workers a few times, never zero times, also from
a process forked after the first one."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.tasks.wakeup import PostgresWakeup, SocketDirWakeup, Wakeup
from tests.support.db import create_pg_database, drop_pg_database


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    """A worker's socket, bound where SocketDirWakeup sends (as listen() binds it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "worker.sock"))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def _drain(sock: socket.socket, quiet: float) -> int:
    """Datagrams received until none came for ``quiet`` seconds."""
    received = 0
    sock.settimeout(quiet)
    try:
        while sock.recv(64):
            received += 1
    except TimeoutError:
        pass
    return received


def test_a_lone_notify_wakes_a_listening_worker_at_once(
    tmp_path: Path, listener: socket.socket
) -> None:
    wakeup = SocketDirWakeup(tmp_path)
    try:
        started = time.monotonic()
        wakeup.notify()
        assert listener.recv(64) == b"!"
        assert time.monotonic() - started < 0.5
    finally:
        wakeup.close()


def test_a_burst_of_notifies_is_sent_as_a_few_wake_ups(
    tmp_path: Path, listener: socket.socket
) -> None:
    wakeup = SocketDirWakeup(tmp_path, min_interval=0.05)
    try:
        for _ in range(200):
            wakeup.notify()
        # The first wakes at once, the others share the next round: the last notify() is
        # never left unsent, and 200 commits are not 200 wake-ups.
        assert listener.recv(64) == b"!"
        assert _drain(listener, quiet=0.3) <= 2
    finally:
        wakeup.close()


def test_a_notify_just_before_close_is_still_sent(tmp_path: Path, listener: socket.socket) -> None:
    wakeup = SocketDirWakeup(tmp_path, min_interval=1.0)
    wakeup.notify()
    assert listener.recv(64) == b"!"
    # The sender now sleeps for its interval; this notify must not be dropped by close().
    wakeup.notify()
    wakeup.close()
    assert listener.recv(64) == b"!"


def _in_a_forked_child(action: Callable[[], None]) -> None:
    """Run ``action`` in a child forked from this process (threads and all); it must exit 0."""
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 1
        try:
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def _notify_and_close(wakeup: Wakeup) -> Callable[[], None]:
    def action() -> None:
        wakeup.notify()
        wakeup.close()  # sends what was notified before it returns

    return action


def test_a_process_forked_after_a_notify_still_wakes_the_workers(
    tmp_path: Path, listener: socket.socket
) -> None:
    wakeup = SocketDirWakeup(tmp_path)
    try:
        wakeup.notify()  # the parent's sender thread now runs
        assert listener.recv(64) == b"!"
        # The child inherits "a sender thread exists" but not the thread.
        _in_a_forked_child(_notify_and_close(wakeup))
        assert listener.recv(64) == b"!"
        wakeup.notify()  # and the parent's own sender still works
        assert listener.recv(64) == b"!"
    finally:
        wakeup.close()


@pytest.mark.postgres
def test_a_forked_child_notifies_on_its_own_connection_and_leaves_the_parents_alone() -> None:
    import psycopg

    url = create_pg_database()
    channel = f"wake_{uuid.uuid4().hex[:12]}"
    wakeup = PostgresWakeup(url, channel=channel)
    try:
        with psycopg.connect(wakeup.conninfo, autocommit=True) as listener:
            listener.execute(f"LISTEN {channel}")

            def next_sender() -> int:
                for note in listener.notifies(timeout=5, stop_after=1):
                    return note.pid
                raise AssertionError("no notification within 5 s")

            wakeup.notify()
            parent = next_sender()
            _in_a_forked_child(_notify_and_close(wakeup))
            # From a session of the child's own: the parent's socket is not shared.
            assert next_sender() != parent
            wakeup.notify()
            # The parent's session survived the child's exit, and still sends.
            assert next_sender() == parent
    finally:
        wakeup.close()
        drop_pg_database(url)
