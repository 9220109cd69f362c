"""`genvault archive copy --to URL`: file → file and file → S3 (moto), verified and resumable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest

from service.archive.copy import ArchiveCopier, CopyReport
from service.cli import main
from service.storage.base import ArchiveStore
from service.storage.filesystem import FilesystemStore
from service.storage.s3 import S3Store

OBJECTS = {
    f"2026/01/0{day}/job-{day}/{name}": f"{day}-{name}-".encode() * (day * 100)
    for day in range(1, 4)
    for name in ("0.png", "1.png", "manifest.json")
}


def _file_store(root: Path) -> FilesystemStore:
    return FilesystemStore(root, url_base="http://127.0.0.1:9", secret=None)


def _fill(store: ArchiveStore) -> None:
    for key, data in OBJECTS.items():
        store.put_bytes(key, data, content_type="image/png", metadata={"job-id": key[11:16]})


def _assert_same(target: ArchiveStore) -> None:
    assert list(target.iter_keys("")) == sorted(OBJECTS)
    for key, data in OBJECTS.items():
        info = target.head(key)
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert info.content_type == "image/png"
        assert info.metadata == {"job-id": key[11:16]}
        with target.open(key) as body:
            assert body.read() == data


def test_file_to_file_copies_everything_and_a_second_run_skips_it_all(tmp_path: Path) -> None:
    source, target = _file_store(tmp_path / "a"), _file_store(tmp_path / "b")
    _fill(source)
    seen: list[tuple[int, int, str]] = []
    report = ArchiveCopier(
        source, target, progress=lambda d, t, _k, outcome: seen.append((d, t, outcome))
    ).run()
    assert (report.copied, report.skipped, report.ok) == (len(OBJECTS), 0, True)
    assert report.bytes_copied == sum(len(d) for d in OBJECTS.values())
    assert seen[-1] == (len(OBJECTS), len(OBJECTS), "copied")
    _assert_same(target)
    again = ArchiveCopier(source, target).run()
    assert (again.copied, again.skipped, again.ok) == (0, len(OBJECTS), True)


def test_file_to_s3_through_the_command_verifies_each_object(
    tmp_path: Path,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _fill(_file_store(tmp_path / "archive"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENVAULT_ARCHIVE_URL", f"file://{tmp_path / 'archive'}")
    assert main(["archive", "copy", "--to", f"s3://{s3_bucket}/moved"]) == 0
    out, err = capsys.readouterr()
    assert f"copied {len(OBJECTS)} (" in out and "conflicts 0" in out
    assert f"{len(OBJECTS)}/{len(OBJECTS)} objects" in err
    target = S3Store(s3_bucket, "moved")
    _assert_same(target)
    # S3 itself holds the SHA-256 of each object (ChecksumSHA256), not only our metadata.
    client = boto3.client("s3")
    key = sorted(OBJECTS)[0]
    answer = client.head_object(Bucket=s3_bucket, Key=f"moved/{key}", ChecksumMode="ENABLED")
    assert bytes.fromhex(target.head(key).sha256 or "") == hashlib.sha256(OBJECTS[key]).digest()
    assert answer["ChecksumSHA256"]
    # And S3 → file back again: the same bytes.
    monkeypatch.setenv("GENVAULT_ARCHIVE_URL", f"s3://{s3_bucket}/moved")
    assert main(["archive", "copy", "--to", f"file://{tmp_path / 'back'}"]) == 0
    _assert_same(_file_store(tmp_path / "back"))


def test_a_copy_cut_short_resumes_where_it_stopped(tmp_path: Path) -> None:
    source, target = _file_store(tmp_path / "a"), _file_store(tmp_path / "b")
    _fill(source)
    copier = ArchiveCopier(source, target)
    partial = CopyReport()
    for key in sorted(OBJECTS)[:4]:
        copier.copy_one(key, partial)
    assert partial.copied == 4
    report = ArchiveCopier(source, target).run()
    assert (report.copied, report.skipped, report.ok) == (len(OBJECTS) - 4, 4, True)
    _assert_same(target)


def test_a_different_object_at_the_destination_is_a_conflict_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = _file_store(tmp_path / "a"), _file_store(tmp_path / "b")
    _fill(source)
    taken = sorted(OBJECTS)[2]
    target.put_bytes(taken, b"something else", content_type="image/png", metadata={})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENVAULT_ARCHIVE_URL", f"file://{tmp_path / 'a'}")
    assert main(["archive", "copy", "--to", f"file://{tmp_path / 'b'}"]) == 1
    out, err = capsys.readouterr()
    assert f"copied {len(OBJECTS) - 1} (" in out and "conflicts 1" in out
    assert f"conflict: {taken}" in err
    with target.open(taken) as body:
        assert body.read() == b"something else"


def test_an_object_whose_bytes_do_not_match_its_digest_is_not_copied(tmp_path: Path) -> None:
    source, target = _file_store(tmp_path / "a"), _file_store(tmp_path / "b")
    _fill(source)
    rotten = sorted(OBJECTS)[0]
    (tmp_path / "a" / rotten).write_bytes(b"bit rot")
    report = ArchiveCopier(source, target).run()
    assert report.failed == [rotten] and not report.ok
    assert report.copied == len(OBJECTS) - 1
    assert rotten not in set(target.iter_keys(""))


def test_copying_an_archive_onto_itself_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENVAULT_ARCHIVE_URL", f"file://{tmp_path / 'a'}")
    assert main(["archive", "copy", "--to", f"file://{tmp_path / 'a'}"]) == 2
