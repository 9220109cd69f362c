"""`genvault archive upgrade`: jobs archived in the dated layouts become OCFL objects.

A job is upgraded only once its old record is trusted: its manifest hashes to what the
database recorded and its Ed25519 signature verifies, and every object the manifest lists is
read back with the SHA-256 it lists. Its files are then copied into its object's content
(``quarantine/`` kept as a directory of it), a new manifest naming the new keys and where it
came from (``upgraded_from``) is signed and written, the object is committed (its
inventory, last), and only then does the database point at the new keys, in one
transaction. Nothing old is deleted: the report lists the directories the operator may
delete once satisfied.

Every step is write-once and deterministic (the new manifest is the old one re-keyed; the
inventory's time is the manifest's), so an interrupted run is resumed by running it again.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service.archive import layout
from service.archive.audit import archived_jobs, asset_rows, manifest_entries
from service.archive.pipeline import (
    archived_at,
    commit_object,
    put_verified,
    write_signed_manifest,
)
from service.db.models import Asset, Job
from service.db.session import Database
from service.db.types import utcnow
from service.security.signing import BadSignature, Signer, signature_key
from service.storage.base import ArchiveStore, ObjectMissing

CHUNK = 1024 * 1024

# (jobs looked at, of how many, job id, outcome: upgraded | already | refused: why)
Progress = Callable[[int, int, str, str], None]


class Refused(Exception):
    """This job's old record cannot be trusted (or is incomplete): it stays as it is."""


@dataclass
class UpgradeReport:
    upgraded: list[str] = field(default_factory=list)
    already: int = 0
    refused: dict[str, str] = field(default_factory=dict)
    # Directories of the dated layouts whose jobs are now objects: the operator's to delete.
    deletable: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused


class Upgrader:
    def __init__(
        self,
        db: Database,
        store: ArchiveStore,
        signer: Signer,
        *,
        progress: Progress | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.signer = signer
        self.progress = progress

    def run(self) -> UpgradeReport:
        report = UpgradeReport()
        total, jobs = archived_jobs(self.db)
        for done, job in enumerate(jobs, start=1):
            rows = asset_rows(self.db, job.id)
            old = layout.for_job(job, [a.key for a in rows])
            if old.ocfl:
                report.already += 1
                outcome = "already"
            else:
                try:
                    report.deletable.extend(self.upgrade(job, rows, old))
                    report.upgraded.append(job.id)
                    outcome = "upgraded"
                except Refused as exc:
                    report.refused[job.id] = str(exc)
                    outcome = f"refused: {exc}"
            if self.progress is not None:
                self.progress(done, total, job.id, outcome)
        return report

    def upgrade(self, job: Job, rows: list[Asset], old: layout.JobLayout) -> list[str]:
        """Make ``job`` an object; the old directories that hold its files."""
        assert job.manifest_key is not None
        body = self._trusted_manifest(job)
        manifest = json.loads(body)
        listed = manifest_entries(manifest)
        new = layout.JobLayout.object(job.id, job.project)
        moves = self._moves(old, new, job.manifest_key, set(listed))
        with tempfile.TemporaryDirectory(prefix="genvault-upgrade-") as tmp:
            for old_key, new_key in moves.items():
                expected = listed[old_key].sha256
                self._copy(job, old_key, new_key, expected, Path(tmp))
        rekeyed = _rekey(manifest, moves)
        rekeyed["object_id"] = new.object_id
        rekeyed["upgraded_from"] = {
            "manifest_key": job.manifest_key,
            "manifest_sha256": hashlib.sha256(body).hexdigest(),
            "signature_key_id": _key_id(self._read(signature_key(job.manifest_key))),
        }
        new_body = write_signed_manifest(
            self.store,
            self.signer,
            job,
            new.manifest_key(),
            json.dumps(rekeyed, indent=2, sort_keys=True, ensure_ascii=False).encode(),
        )
        commit_object(self.store, new, archived_at(new_body, job.archived_at or utcnow()))
        with self.db.transaction() as session:
            stored = session.get(Job, job.id, with_for_update=True)
            assert stored is not None
            for asset in session.execute(select(Asset).where(Asset.job_id == job.id)).scalars():
                if asset.key in moves:
                    asset.key = moves[asset.key]
            stored.params = _rekey(stored.params, moves)
            stored.manifest_key = new.manifest_key()
            stored.manifest_sha256 = hashlib.sha256(new_body).hexdigest()
            # Not an update of the job as its users know it: updated_at stays the manifest's
            # archived_at (the column's onupdate would stamp now; reindex gives that back).
            stored.updated_at = Job.updated_at
        return [p for p in old.prefixes() if next(iter(self.store.iter_keys(p + "/")), None)]

    def _trusted_manifest(self, job: Job) -> bytes:
        assert job.manifest_key is not None
        try:
            body = self._read(job.manifest_key)
            signature = self._read(signature_key(job.manifest_key))
        except ObjectMissing as exc:
            raise Refused(f"{exc}; nothing to verify it with") from None
        if job.manifest_sha256 and hashlib.sha256(body).hexdigest() != job.manifest_sha256:
            raise Refused("the manifest differs from the one the database recorded")
        try:
            self.signer.verifier.verify(body, signature)
        except BadSignature as exc:
            raise Refused(f"the manifest's signature does not verify: {exc}") from None
        return body

    def _moves(
        self, old: layout.JobLayout, new: layout.JobLayout, manifest_key: str, listed: set[str]
    ) -> dict[str, str]:
        """Every file of the old directories and its key in the object's content."""
        moves: dict[str, str] = {}
        own, quarantine = old.prefixes()
        for prefix, into in ((own, new.prefix()), (quarantine, new.prefix(quarantine=True))):
            for key in self.store.iter_keys(prefix + "/"):
                if key in (manifest_key, signature_key(manifest_key)):
                    continue
                if key not in listed:
                    raise Refused(f"{key} is in the job's directory but not in its manifest")
                moves[key] = f"{into}/{key.removeprefix(prefix + '/')}"
        if missing := sorted(listed - set(moves)):
            raise Refused(f"listed in the manifest but missing: {', '.join(missing)}")
        return moves

    def _copy(self, job: Job, old_key: str, new_key: str, sha256: str | None, tmp: Path) -> None:
        """Read ``old_key`` (checking it is what the manifest says) and write it once."""
        path = tmp / "object"
        digest = hashlib.sha256()
        with self.store.open(old_key) as src, path.open("wb") as out:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise Refused(f"{old_key} differs from its manifest entry ({digest.hexdigest()})")
        content_type = self.store.head(old_key).content_type or "application/octet-stream"
        metadata = {"job-id": job.id, "track-id": job.track_id, "sha256": digest.hexdigest()}
        put_verified(self.store, new_key, path, digest.hexdigest(), content_type, metadata)

    def _read(self, key: str) -> bytes:
        with self.store.open(key) as stream:
            return stream.read()


def _rekey(value: Any, moves: dict[str, str]) -> Any:
    """``value`` with every string that is an old key replaced by its new key."""
    if isinstance(value, str):
        return moves.get(value, value)
    if isinstance(value, list):
        return [_rekey(v, moves) for v in value]
    if isinstance(value, dict):
        return {k: _rekey(v, moves) for k, v in value.items()}
    return value


def _key_id(signature_document: bytes) -> str | None:
    try:
        found = json.loads(signature_document).get("key_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None
