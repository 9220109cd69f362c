"""Helpers the benches share: servers in processes of their own (not sharing our GIL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.support.db import create_pg_database, drop_pg_database
from tests.support.s3 import free_port

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Server:
    """A server process of a bench: where it answers, and what CPU it has used."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (Linux /proc), threads included."""
        return cpu_seconds(self.pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc), threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def process_server(argv: list[str], url: str, probe: str = "/") -> Iterator[Server]:
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
        yield Server(url, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


@contextmanager
def moto_server() -> Iterator[Server]:
    """moto's S3 in server mode on a loopback port (its URL is the endpoint)."""
    port = free_port()
    argv = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with process_server(argv, f"http://127.0.0.1:{port}") as server:
        yield server


def create_bucket(endpoint: str, name: str = "bench") -> str:
    """A bucket on the S3 server at ``endpoint`` (moto takes any credentials); its name."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=name)
    return name


@contextmanager
def file_server(directory: Path) -> Iterator[Server]:
    """Python's static file server on ``directory`` (its URL is the base URL)."""
    port = free_port()
    argv = [sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", str(directory)]
    with process_server([*argv, str(port)], f"http://127.0.0.1:{port}") as server:
        yield server


def databases(names: str, tmp: Path) -> Iterator[tuple[str, str]]:
    """(name, URL) for each of ``names`` ("sqlite,postgresql"): a file in ``tmp``, or a new
    PostgreSQL database, dropped after its turn. A PostgreSQL out of reach is said, skipped."""
    for name in names.split(","):
        if name == "sqlite":
            yield name, f"sqlite:///{tmp / 'bench.db'}"
            continue
        try:
            url = create_pg_database()
        except BaseException as exc:  # pytest.skip is a BaseException
            print(f"{name}: skipped ({exc})")
            continue
        try:
            yield name, url
        finally:
            drop_pg_database(url)


@contextmanager
def delayed(server: Server, rtt_ms: float) -> Iterator[Server]:
    """``server`` behind bench/delay_proxy.py with ``rtt_ms`` of round trip; itself at 0."""
    if rtt_ms <= 0:
        yield server
        return
    port = free_port()
    target = server.url.removeprefix("http://")
    argv = [sys.executable, str(Path(__file__).with_name("delay_proxy.py")), "--port", str(port)]
    argv += ["--target", target, "--delay-ms", str(rtt_ms / 2)]
    with process_server(argv, f"http://127.0.0.1:{port}") as proxy:
        yield proxy
