"""A PostgreSQL cluster of the test's own, to stop and restart at will.

Never the machine's server: ``initdb`` makes a fresh data directory, the server listens on
its own loopback port and socket directory, and everything is removed afterwards. The
binaries come from /usr/lib/postgresql/*/bin; they run as the ``postgres`` user when the
tests run as root (initdb refuses root). Without the binaries, tests skip with the reason
(and fail in CI, where GENVAULT_REQUIRE_POSTGRES is set).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.support.s3 import free_port


def find_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(found[0]).parent if found else None


@dataclass
class PgCluster:
    bindir: Path
    root: Path
    port: int

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        return self.root / "sock"

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        # Output to a file, not a pipe: the server pg_ctl starts would inherit a pipe and
        # keep it open, and reading it to the end would wait for the server to exit.
        with tempfile.TemporaryFile() as out:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
            out.seek(0)
            output = out.read().decode(errors="replace")
        if done.returncode != 0:
            raise AssertionError(
                f"{argv[0]} failed ({done.returncode}): {output}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        log = self.root / "server.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def init(self) -> None:
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-N")
        self.sockdir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.sockdir, "postgres", "postgres")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off -c max_connections=100"
        )
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every connection is cut, the server comes straight back."""
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "server.log"),
            "-m", "fast", "-w", "-t", "30", "restart",
        )  # fmt: skip

    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def create_database(self) -> str:
        name = f"genvault_f_{uuid.uuid4().hex[:10]}"
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        if self.running():
            # Already gone or not: the directory goes anyway.
            with contextlib.suppress(AssertionError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """A running cluster for this module's tests, removed at the end."""
    bindir = find_bindir()
    reason = None
    if bindir is None:
        reason = "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
    elif os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            reason = "running as root and there is no postgres user to run the server as"
    if reason is not None:
        if os.environ.get("GENVAULT_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="genvault-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = PgCluster(bindir, root, free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
