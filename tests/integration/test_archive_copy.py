"""`genvault archive copy --to URL`: file → file and file → S3 (moto), verified and resumable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import boto3
import pytest

from service.archive import tombstone
from service.archive.copy import ArchiveCopier, CopyReport
from service.cli import main
from service.storage.base import ArchiveStore, ObjectInfo
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


@pytest.mark.damages_archive
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


def _erase_at(store: ArchiveStore, job: str) -> list[str]:
    """What an erasure leaves at the source: the job's objects gone, its tombstone listing
    them (service/jobs/erasure.py does it through the API)."""
    keys = [key for key in sorted(OBJECTS) if f"/{job}/" in key]
    # The fields the copy reads, as service/archive/tombstone.py writes them.
    removed = [
        {"key": key, "sha256": hashlib.sha256(OBJECTS[key]).hexdigest(), "size": len(OBJECTS[key])}
        for key in keys
    ]
    data = json.dumps({"type": tombstone.KIND, "job_id": job, "removed": removed}).encode()
    store.put_bytes(
        tombstone.tombstone_key("default", job), data, content_type="application/json", metadata={}
    )
    for key in keys:
        store.delete(key)
    return keys


def test_a_job_erased_between_two_passes_is_erased_at_the_destination_too(
    tmp_path: Path,
) -> None:
    source, target = _file_store(tmp_path / "a"), _file_store(tmp_path / "b")
    _fill(source)
    assert ArchiveCopier(source, target).run().copied == len(OBJECTS)
    erased = _erase_at(source, "job-2")
    report = ArchiveCopier(source, target).run()
    assert report.ok and sorted(report.erased) == erased
    assert (report.copied, report.skipped) == (1, len(OBJECTS) - len(erased))  # the tombstone
    assert list(target.iter_keys("")) == sorted(
        [*(set(OBJECTS) - set(erased)), tombstone.tombstone_key("default", "job-2")]
    )
    again = ArchiveCopier(source, target).run()
    assert again.ok and again.erased == [] and again.copied == 0


def test_the_command_counts_what_it_erased_at_the_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _file_store(tmp_path / "a")
    _fill(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENVAULT_ARCHIVE_URL", f"file://{tmp_path / 'a'}")
    assert main(["archive", "copy", "--to", f"file://{tmp_path / 'b'}"]) == 0
    assert "vanished 0, erased 0" in capsys.readouterr().out
    erased = _erase_at(source, "job-2")
    assert main(["archive", "copy", "--to", f"file://{tmp_path / 'b'}"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("copied 1 (") and "failed 0, vanished 0, " in out
    assert f"erased {len(erased)}" in out and len(erased) == 3


def test_an_erased_key_holding_other_bytes_at_the_destination_is_left_alone(
    tmp_path: Path,
) -> None:
    source, target = _file_store(tmp_path / "a"), _file_store(tmp_path / "b")
    _fill(source)
    other = sorted(k for k in OBJECTS if "/job-3/" in k)[0]
    target.put_bytes(other, b"not what was erased", content_type="image/png", metadata={})
    ArchiveCopier(source, target).run()
    erased = _erase_at(source, "job-3")
    report = ArchiveCopier(source, target).run()
    assert report.conflicts == [other] and not report.ok
    assert sorted(report.erased) == sorted(set(erased) - {other})
    with target.open(other) as body:
        assert body.read() == b"not what was erased"


def test_an_object_erased_while_the_copy_runs_is_vanished_not_an_error(tmp_path: Path) -> None:
    # The first pass runs while genvault does: a job may be erased after the listing.
    source, target = _file_store(tmp_path / "a"), _file_store(tmp_path / "b")
    _fill(source)
    keys = sorted(OBJECTS)
    erased: list[str] = []

    def erase_after_the_first(done: int, _total: int, _key: str, _outcome: str) -> None:
        if done == 1:
            erased.extend(_erase_at(source, "job-3"))

    report = ArchiveCopier(source, target, progress=erase_after_the_first).run()
    assert report.ok and report.vanished == len(erased) == 3
    assert report.copied == len(keys) - len(erased)
    # Its tombstone was written after the listing: the next pass brings it over.
    assert all(key not in set(target.iter_keys("")) for key in erased)
    assert ArchiveCopier(source, target).run().copied == 1


class CaughtMidWrite(FilesystemStore):
    """A file store whose objects in ``unlabelled`` have their bytes but not yet their labels,
    as between the two writes of FilesystemStore._write."""

    unlabelled: set[str]

    def head(self, key: str) -> ObjectInfo:
        info = super().head(key)
        if key in self.unlabelled:
            return dataclasses.replace(info, content_type=None, metadata={})
        return info


def test_an_object_caught_before_its_labels_are_written_is_copied_with_them(
    tmp_path: Path,
) -> None:
    source = CaughtMidWrite(tmp_path / "a", url_base="http://127.0.0.1:9", secret=None)
    target = _file_store(tmp_path / "b")
    _fill(source)
    caught = sorted(OBJECTS)[0]
    source.unlabelled = {caught}
    order: list[tuple[int, str]] = []

    def labels_written(done: int, _total: int, key: str, _outcome: str) -> None:
        order.append((done, key))
        source.unlabelled = set()  # the writer finished meanwhile

    report = ArchiveCopier(source, target, progress=labels_written).run()
    assert report.ok and report.copied == len(OBJECTS)
    # Copied last, with its labels: a later pass would have skipped it as equal for good.
    assert order[-1] == (len(OBJECTS), caught)
    _assert_same(target)


def test_an_object_whose_labels_never_come_is_copied_without_them(tmp_path: Path) -> None:
    source = CaughtMidWrite(tmp_path / "a", url_base="http://127.0.0.1:9", secret=None)
    target = _file_store(tmp_path / "b")
    _fill(source)
    lost = sorted(OBJECTS)[0]
    source.unlabelled = {lost}  # a crash between the bytes and the labels, long ago
    report = ArchiveCopier(source, target).run()
    assert report.ok and report.copied == len(OBJECTS)
    info = target.head(lost)
    assert info.sha256 == hashlib.sha256(OBJECTS[lost]).hexdigest()
    assert info.content_type == "application/octet-stream"
