"""`genvault export --bag DIR`: real archived jobs as a BagIt bag that bagit.py accepts.

Jobs are archived the way the worker archives them (the sandbox provider, a file server for
outputs, an inline input), on the file archive and on moto's S3 server; the bag is checked by
the Library of Congress validator (`bagit.py --validate`, never --fast) through
tests/support/validators.py, and by reading it back against the database.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from service.archive.export import ExportError, Selection, export_bag
from service.cli import main
from service.db.models import Asset, Job
from service.db.types import utcnow
from service.security.signing import signature_key
from service.storage.filesystem import FilesystemStore
from service.wiring import Container
from tests.integration.test_archive import _deliver, _settle, make, sandbox  # noqa: F401
from tests.integration.test_archive_projects import _inline_png, _waiting
from tests.support import badfiles
from tests.support.fileserver import FileServer
from tests.support.validators import validate_bag


def _archive(c: Container, fileserver: FileServer, n: int, *, inputs: bool = False) -> str:
    """One job through submit, webhook and archive; its id."""
    params: dict[str, Any] = {"init_image": _inline_png()} if inputs else {}
    job, worker = _waiting(c, **params)
    urls = [
        fileserver.put(f"/{job.id}-{i}.png", badfiles.image_bytes("png", 32 + n, 24 + i))
        for i in range(2)
    ]
    _deliver(c, job, urls)
    done = _settle(c, worker, job.id)
    assert done.status == "archived", done.error_message
    return str(done.id)


def _dated(c: Container, job_id: str, day: str) -> None:
    with c.db.transaction() as s:
        at = datetime.fromisoformat(day).replace(hour=23, minute=59, tzinfo=UTC)
        s.execute(update(Job).where(Job.id == job_id).values(created_at=at))


def _expected(c: Container, job_id: str) -> dict[str, str]:
    """Every key of the job that the bag must hold, with its SHA-256 on record (or None)."""
    with c.db.transaction() as s:
        job = s.get_one(Job, job_id)
        keys = {
            a.key: a.sha256
            for a in s.execute(select(Asset).where(Asset.job_id == job_id)).scalars()
            if a.key
        }
    assert job.manifest_key
    return {
        **keys,
        job.manifest_key: job.manifest_sha256 or "",
        signature_key(job.manifest_key): "",
    }


def _payload(bag: Path) -> dict[str, str]:
    """data/… → sha256, from the bag's manifest-sha256.txt, checked against the files."""
    lines = (bag / "manifest-sha256.txt").read_text().splitlines()
    found = {path: digest for digest, path in (line.split("  ", 1) for line in lines)}
    for rel, digest in found.items():
        assert hashlib.sha256((bag / rel).read_bytes()).hexdigest() == digest
    return found


def _assert_bag_holds(c: Container, bag: Path, job_ids: list[str]) -> None:
    payload = _payload(bag)
    assert {p.split("/")[1] for p in payload} == set(job_ids)
    for job_id in job_ids:
        expected = _expected(c, job_id)
        mine = {p: d for p, d in payload.items() if p.split("/")[1] == job_id}
        assert len(mine) == len(expected)
        # Each key is in the bag at the longest path its own key ends with, byte for byte.
        placed = set()
        for key, digest in expected.items():
            rel = max((p for p in mine if key.endswith("/" + p.split("/", 2)[2])), key=len)
            placed.add(rel)
            with c.store.open(key) as body:
                assert (bag / rel).read_bytes() == body.read()
            assert not digest or mine[rel] == digest
        assert placed == set(mine)
    info = (bag / "bag-info.txt").read_text()
    size = sum((bag / p).stat().st_size for p in payload)
    assert f"Payload-Oxum: {size}.{len(payload)}" in info
    assert "Bag-Software-Agent: genvault " in info and "Source-Organization: genvault" in info


@pytest.fixture(params=["file", "s3"])
def archive(
    request: pytest.FixtureRequest,
    make: Any,  # noqa: F811
    tmp_path: Path,
    s3_bucket: str,
) -> Container:
    """A wired genvault archiving to the file store, then to moto's S3 server."""
    if request.param == "s3":
        return make(archive_url=f"s3://{s3_bucket}/vault")  # type: ignore[no-any-return]
    return make(archive_url=f"file://{tmp_path / 'files'}")  # type: ignore[no-any-return]


@pytest.fixture
def files(make: Any, tmp_path: Path) -> Container:  # noqa: F811
    """A wired genvault archiving to the file store at tmp_path/files."""
    return make(archive_url=f"file://{tmp_path / 'files'}")  # type: ignore[no-any-return]


def test_export_by_job_and_by_date_range_passes_bagit(
    archive: Container, fileserver: FileServer, tmp_path: Path
) -> None:
    c = archive
    a = _archive(c, fileserver, 1, inputs=True)
    b = _archive(c, fileserver, 2)
    late = _archive(c, fileserver, 3)
    for job_id, day in ((a, "2026-01-05"), (b, "2026-01-07"), (late, "2026-01-08")):
        _dated(c, job_id, day)
    lines: list[str] = []

    by_job = tmp_path / "by-job"
    report = export_bag(c.db, c.store, Selection(job_ids=(a, b)), by_job, progress=lines.append)
    assert sorted(report.jobs) == sorted([a, b])
    done = validate_bag(by_job)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_bag_holds(c, by_job, [a, b])
    # Outputs, thumbnails, the manifest and its signature; and a's input.
    counts = {a: 7, b: 6}
    assert lines == [
        f"{n}/2 jobs: {job_id}, {counts[job_id]} objects"
        for n, job_id in enumerate(sorted(counts), start=1)
    ]
    with c.db.transaction() as s:
        inputs = s.execute(select(Asset).where(Asset.job_id == a, Asset.role == "input")).all()
    assert inputs  # the inline input went in with its job

    # Both ends inclusive, whatever the hour: 2026-01-05 23:59 and 2026-01-07 23:59 are in.
    by_range = tmp_path / "by-range"
    (by_range).mkdir()  # an empty directory is taken
    ranged = export_bag(
        c.db,
        c.store,
        Selection(first=datetime(2026, 1, 5).date(), last=datetime(2026, 1, 7).date()),
        by_range,
    )
    assert sorted(ranged.jobs) == sorted([a, b])
    done = validate_bag(by_range)
    assert done.returncode == 0, done.stdout + done.stderr
    _assert_bag_holds(c, by_range, [a, b])

    # A flipped byte in a payload file: the validator rejects the bag.
    victim = next((by_range / "data" / a).rglob("*.png"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    done = validate_bag(by_range)
    assert done.returncode != 0, done.stdout + done.stderr


@pytest.mark.damages_archive
def test_bad_bytes_in_the_archive_are_refused_and_nothing_is_left(
    files: Container, fileserver: FileServer, tmp_path: Path
) -> None:
    c = files
    job_id = _archive(c, fileserver, 1)
    with c.db.transaction() as s:
        key = (
            s.execute(select(Asset.key).where(Asset.job_id == job_id, Asset.role == "output"))
            .scalars()
            .first()
        )
    assert isinstance(c.store, FilesystemStore) and key
    rotten = tmp_path / "files" / key
    rotten.chmod(0o644)
    rotten.write_bytes(rotten.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ExportError, match="sha256"):
        export_bag(c.db, c.store, Selection(job_ids=(job_id,)), tmp_path / "bag")
    assert not (tmp_path / "bag").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bag.")] == []


def test_the_command_refuses_what_it_cannot_do_and_skips_unarchived_jobs(
    files: Container,
    fileserver: FileServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    c = files
    job_id = _archive(c, fileserver, 1)
    waiting, _ = _waiting(c)
    erased = _archive(c, fileserver, 2)
    with c.db.transaction() as s:  # as DELETE /v1/jobs/{id} leaves it: a tombstone row
        s.execute(update(Job).where(Job.id == erased).values(status="deleted", deleted_at=utcnow()))
    monkeypatch.setenv("GENVAULT_DATABASE_URL", str(c.db.engine.url))
    monkeypatch.setenv("GENVAULT_ARCHIVE_URL", f"file://{tmp_path / 'files'}")
    bag = tmp_path / "bag"

    assert main(["export", "--bag", str(bag), "--job", "nope"]) == 1
    assert "no such job: nope" in capsys.readouterr().err
    assert main(["export", "--bag", str(bag), "--job", job_id, "--project", "other"]) == 1
    assert "no such job in project other" in capsys.readouterr().err
    assert main(["export", "--bag", str(bag), "--from", "2026-01-01"]) == 2
    assert main(["export", "--bag", str(bag), "--from", "2026-13-01", "--to", "2026-01-02"]) == 2
    assert "--from wants a date" in capsys.readouterr().err
    assert main(["export", "--bag", str(bag), "--job", waiting.id]) == 1
    err = capsys.readouterr().err
    assert f"skipped {waiting.id}: not archived (processing)" in err
    assert "no archived job to export" in err

    (bag / "taken").mkdir(parents=True)
    assert main(["export", "--bag", str(bag), "--job", job_id]) == 1
    assert "is not an empty directory" in capsys.readouterr().err
    (bag / "taken").rmdir()

    argv = ["export", "--bag", str(bag), "--job", job_id, "--job", waiting.id, "--job", erased]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "bag written to" in out and "1 jobs" in out and "skipped 2" in out
    assert f"skipped {waiting.id}: not archived" in err and f"skipped {erased}: deleted" in err
    done = validate_bag(bag)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_installed_command_writes_a_bag(
    files: Container, fileserver: FileServer, tmp_path: Path
) -> None:
    c = files
    job_id = _archive(c, fileserver, 1)
    genvault = Path(sys.executable).parent / "genvault"
    env = {
        **os.environ,
        "GENVAULT_DATABASE_URL": str(c.db.engine.url),
        "GENVAULT_ARCHIVE_URL": f"file://{tmp_path / 'files'}",
    }
    bag = tmp_path / "bag"
    done = subprocess.run(
        [str(genvault), "export", "--bag", str(bag), "--job", job_id],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"bag written to {bag}: 1 jobs" in done.stdout
    assert f"1/1 jobs: {job_id}, 6 objects" in done.stderr
    checked = validate_bag(bag)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    _assert_bag_holds(c, bag, [job_id])
