"""SQLite's wake-ups: a burst of commits wakes the workers a few times, never zero times."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.tasks.wakeup import SocketDirWakeup


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
