"""`genvault archive copy --to URL`: every object of the archive into another one, verified.

For each key of the source, in key order:

- already at the destination with the same SHA-256: skipped (so a second run resumes, and
  picks up what was written since the first);
- at the destination with another digest (or none to compare): a conflict, left alone;
- otherwise streamed to a temporary file while hashed, the digest compared with the one the
  source stored with the object, written write-once with it (the destination checks it too),
  and the destination's digest read back and compared again.

Nothing at the destination is ever overwritten: the stores only write absent keys.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.storage.base import ArchiveStore, ObjectExists, ObjectInfo, ObjectMissing

CHUNK = 1024 * 1024


@dataclass
class CopyReport:
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0
    # Keys present at the destination with other bytes: never overwritten.
    conflicts: list[str] = field(default_factory=list)
    # Keys whose bytes did not match their recorded digest (at the source or after the write).
    failed: list[str] = field(default_factory=list)

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
        for done, key in enumerate(keys, start=1):
            outcome = self.copy_one(key, report)
            self.progress(done, len(keys), key, outcome)
        return report

    def copy_one(self, key: str, report: CopyReport) -> str:
        info = self.source.head(key)
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
