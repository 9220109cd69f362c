"""Helpers the benches share: servers in processes of their own (not sharing our GIL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support.s3 import free_port

BIN = Path(sys.executable).parent


@contextmanager
def process_server(argv: list[str], url: str, probe: str = "/") -> Iterator[str]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url + probe, timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 in server mode on a loopback port; yields its endpoint URL."""
    port = free_port()
    argv = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with process_server(argv, f"http://127.0.0.1:{port}") as url:
        yield url


@contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """Python's static file server on ``directory``; yields its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", str(directory)]
    with process_server([*argv, str(port)], f"http://127.0.0.1:{port}") as url:
        yield url
