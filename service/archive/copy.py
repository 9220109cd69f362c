"""`genvault archive copy --to URL`: every object of the archive into another one, verified.

For each key of the source, in key order:

- already at the destination with the same SHA-256: skipped (so a second run resumes, and
  picks up what was written since the first);
- at the destination with another digest (or none to compare): a conflict, left alone;
- otherwise streamed to a temporary file while hashed, the digest compared with the one the
  source stored with the object, written write-once with it (the destination checks it too),
  and the destination's digest read back and compared again.

Nothing at the destination is ever overwritten: the stores only write absent keys.

The source may be in use while it is copied (the runbook's first pass). A key listed but
gone before it was read (an erasure ran meanwhile) is ``vanished``, not an error. An object
the source describes without its labels (content type, metadata) may be one caught between
its bytes and its labels being written (the file store writes them one after the other):
copied as it is, its destination copy would keep no labels for good, since later passes
skip it as equal. Such objects are copied last, once the writer has had time to finish;
one still without labels then (a crash left it so) is copied as it is. And an
erasure is carried over: after the pass, every tombstone of the source is read again and
each object it lists as removed is removed from the destination too where it holds the
same bytes (one with other bytes is a conflict, left alone), so the images of a job erased
between two passes do not live on in the new archive.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.archive.tombstone import TOMBSTONES
from service.storage.base import (
    ArchiveStore,
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    StorageError,
)

CHUNK = 1024 * 1024
# Seconds an object found without its labels is given to get them before it is copied.
LABELS_GRACE = 1.0


@dataclass
class CopyReport:
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    # Keys present at the destination with other bytes: never overwritten.
    conflicts: list[str] = field(default_factory=list)
    # Keys whose bytes did not match their recorded digest (at the source or after the write),
    # and erased objects the destination would not remove.
    failed: list[str] = field(default_factory=list)
    # Listed at the source but gone before they were read (erased meanwhile).
    vanished: int = 0
    # Removed from the destination because a tombstone of the source lists them.
    erased: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.failed


# (done, total, key, outcome): outcome is copied | skipped | conflict | failed.
Progress = Callable[[int, int, str, str], None]


def _digest(store: ArchiveStore, key: str) -> str:
    digest = hashlib.sha256()
    with store.open(key) as body:
        while chunk := body.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stored_sha256(store: ArchiveStore, info: ObjectInfo) -> str:
    """The digest the store keeps for the object, else one read of its bytes."""
    return info.sha256.lower() if info.sha256 else _digest(store, info.key)


def _head(store: ArchiveStore, key: str) -> ObjectInfo | None:
    try:
        return store.head(key)
    except ObjectMissing:
        return None


class ArchiveCopier:
    def __init__(
        self,
        source: ArchiveStore,
        target: ArchiveStore,
        *,
        workdir: Path | None = None,
        progress: Progress = lambda _done, _total, _key, _outcome: None,
    ) -> None:
        self.source = source
        self.target = target
        self.workdir = workdir
        self.progress = progress

    def run(self) -> CopyReport:
        report = CopyReport()
        # Listed first, so progress can say how far along it is; keys only, no bytes.
        keys = list(self.source.iter_keys(""))
        done = 0
        unlabelled: list[str] = []
        deferred_at = 0.0
        for key in keys:
            outcome = self.copy_one(key, report, defer_unlabelled=True)
            if outcome == "deferred":
                if not unlabelled:
                    deferred_at = time.monotonic()
                unlabelled.append(key)
                continue
            done += 1
            self.progress(done, len(keys), key, outcome)
        if unlabelled:
            time.sleep(max(0.0, deferred_at + LABELS_GRACE - time.monotonic()))
        for key in unlabelled:
            done += 1
            self.progress(done, len(keys), key, self.copy_one(key, report))
        # Listed again: a job erased during the pass has its tombstone written by now.
        self.carry_erasures(report)
        return report

    def copy_one(self, key: str, report: CopyReport, *, defer_unlabelled: bool = False) -> str:
        """Copy one key; its outcome (``deferred``: unlabelled at the source, left for later,
        only with ``defer_unlabelled``)."""
        try:
            return self._copy_one(key, report, defer_unlabelled)
        except ObjectMissing:
            if _head(self.source, key) is not None:
                raise  # not the source's doing
            report.vanished += 1
            return "vanished"

    def _copy_one(self, key: str, report: CopyReport, defer_unlabelled: bool) -> str:
        info = self.source.head(key)
        if defer_unlabelled and info.content_type is None:
            return "deferred"
        existing = _head(self.target, key)
        if existing is not None:
            return self._compare(key, _stored_sha256(self.source, info), existing, report)
        with tempfile.TemporaryDirectory(dir=self.workdir, prefix="genvault-copy-") as tmp:
            staged = Path(tmp) / "object"
            digest, size = self._stage(key, staged)
            if info.sha256 and digest != info.sha256.lower():
                report.failed.append(key)  # the source's bytes are not what it recorded
                return "failed"
            try:
                self.target.put_file(
                    key,
                    staged,
                    sha256=digest,
                    content_type=info.content_type or "application/octet-stream",
                    metadata=info.metadata,
                )
            except ObjectExists:
                # Written meanwhile by someone else: judged like any object already there.
                return self._compare(key, digest, self.target.head(key), report)
        written = self.target.head(key)
        if _stored_sha256(self.target, written) != digest or written.size != size:
            report.failed.append(key)
            return "failed"
        report.copied += 1
        report.bytes_copied += size
        return "copied"

    def _stage(self, key: str, path: Path) -> tuple[str, int]:
        """Stream the source object to ``path``; its SHA-256 and size, computed on the way."""
        digest = hashlib.sha256()
        size = 0
        with self.source.open(key) as body, path.open("xb") as out:
            while chunk := body.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return digest.hexdigest(), size

    def _compare(self, key: str, digest: str, existing: ObjectInfo, report: CopyReport) -> str:
        if _stored_sha256(self.target, existing) == digest:
            report.skipped += 1
            return "skipped"
        report.conflicts.append(key)
        return "conflict"

    def carry_erasures(self, report: CopyReport) -> None:
        """Remove from the destination what the source's tombstones list as removed."""
        for key in list(self.source.iter_keys(f"{TOMBSTONES}/")):
            if not key.endswith(".json"):
                continue  # the signatures beside them
            try:
                with self.source.open(key) as body:
                    removed = json.loads(body.read())["removed"]
            except ObjectMissing:
                continue
            for entry in removed:
                self._erase(str(entry["key"]), entry.get("sha256"), report)

    def _erase(self, key: str, sha256: str | None, report: CopyReport) -> None:
        existing = _head(self.target, key)
        if existing is None:
            return  # never copied, or erased by an earlier pass
        # Only the bytes the erasure removed: a key listed without a digest had only older
        # versions left at the source, and what the destination holds under it came from there.
        if sha256 is not None and _stored_sha256(self.target, existing) != sha256.lower():
            report.conflicts.append(key)
            return
        try:
            self.target.delete(key)
        except StorageError:
            report.failed.append(key)  # retained (Object Lock), or the store refused
            return
        report.erased.append(key)
