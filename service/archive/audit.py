"""Audit: re-read archived objects and check them against the database and the manifests.

Two sources of truth are compared with what the store holds, so rewriting one of them is
not enough to hide a change:

- with the database (`genvault audit`, ``GET /v1/jobs/{id}/audit``): every object against
  its asset row (key, sha256, size) and its manifest entry; the manifest against the SHA-256
  the job recorded when it was written; the manifest's Ed25519 signature;
- from the bucket alone (`genvault audit --bucket-only`): every manifest under the archive
  root against its signature (public key only), then every object it lists.

Per job it reports objects that are gone (missing), objects or manifests whose bytes no
longer match (altered, with what they were checked against), a bad or absent signature, and
objects under the job's prefix that nothing lists (unlisted). Keys a manifest lists under
``derived`` (thumbnails and such) count as listed and are checked like the others.

A job that is an OCFL object is also checked against its inventory: committed (the root
inventory and its sidecar are there and agree), the version's copy the same, and every
content file present with the SHA-512 the inventory gives, and none it does not list. The
inventory is not what vouches for the images, though: it carries no signature, so a
coordinated rewrite of an image and the inventory passes an OCFL validator, and is caught
here by the signed manifest's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from service.archive import layout
from service.archive.ocfl import inventory as ocfl_inventory
from service.archive.ocfl import naming as ocfl_naming
from service.archive.ocfl import objects as ocfl_objects
from service.db.models import Asset, Job
from service.db.session import Database
from service.events import outbox
from service.jobs.states import JobStatus
from service.security.signing import BadSignature, Verifier, signature_key
from service.storage.base import ArchiveStore, ObjectMissing

CHUNK = 1024 * 1024
MANIFEST_NAME = "manifest.json"

# What a signature check found; "not checked" only when no key was available, "unsigned"
# only for a job the database says was archived before manifests were signed.
SIGNATURE_VALID = "valid"
SIGNATURE_NOT_CHECKED = "not checked"
SIGNATURE_PREDATES = "unsigned: archived before manifests were signed"
SIGNATURE_MISSING = "missing"
ACCEPTABLE_SIGNATURES = (SIGNATURE_VALID, SIGNATURE_NOT_CHECKED, SIGNATURE_PREDATES)


@dataclass
class JobAudit:
    job_id: str | None
    manifest_key: str | None
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    altered: list[dict[str, Any]] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    signature: str = SIGNATURE_NOT_CHECKED
    error: str | None = None

    @property
    def ok(self) -> bool:
        bad_signature = self.signature not in ACCEPTABLE_SIGNATURES
        return not (self.missing or self.altered or self.unlisted or self.error or bad_signature)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


@dataclass(frozen=True)
class Expected:
    """What one source says an object is."""

    sha256: str | None
    size: int | None


@dataclass(frozen=True)
class Digests:
    sha256: str
    sha512: str
    size: int


def _digest(store: ArchiveStore, key: str) -> Digests:
    found = ocfl_objects.read_content(store, key, key)
    return Digests(found.sha256, found.sha512, found.size)


def _read(store: ArchiveStore, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def manifest_entries(
    manifest: Mapping[str, Any], *, derived_only: bool = False
) -> dict[str, Expected]:
    """Every stored object a manifest lists (assets, inputs, derived), by key.

    ``derived`` lists may sit at the top level or inside an asset's entry.
    """
    found: dict[str, Expected] = {}

    def visit(entries: Any, derived: bool) -> None:
        if not isinstance(entries, list):
            return
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            key = entry.get("key")
            if isinstance(key, str) and key and (derived or not derived_only):
                found[key] = Expected(entry.get("sha256"), entry.get("size"))
            visit(entry.get("derived"), True)

    visit(manifest.get("assets"), False)
    visit(manifest.get("inputs"), False)
    visit(manifest.get("derived"), True)
    return found


def signature_status(
    store: ArchiveStore,
    manifest_key: str,
    body: bytes,
    verifier: Verifier,
    *,
    predates_signing: bool,
) -> str:
    """What ``manifest.json.sig`` says of ``body``: valid, missing, invalid: why, or predates.

    Raises StorageError (other than a missing object) when the signature cannot be read.
    """
    try:
        verifier.verify(body, _read(store, signature_key(manifest_key)))
    except ObjectMissing:
        # Only the database can vouch that a job is older than signing: from the bucket
        # alone a missing signature is always a problem.
        return SIGNATURE_PREDATES if predates_signing else SIGNATURE_MISSING
    except BadSignature as exc:
        return f"invalid: {exc}"
    return SIGNATURE_VALID


class _Check:
    """One job's audit in progress: reads the manifest, then checks objects and prefixes."""

    def __init__(self, store: ArchiveStore, report: JobAudit, verifier: Verifier | None) -> None:
        self.store = store
        self.report = report
        self.verifier = verifier
        # Each object is read once: the OCFL check reuses what the source check hashed.
        self.digests: dict[str, Digests] = {}

    def digest(self, key: str) -> Digests:
        """Raises ObjectMissing."""
        if key not in self.digests:
            self.digests[key] = _digest(self.store, key)
        return self.digests[key]

    def manifest(
        self, key: str, recorded_sha256: str | None, *, predates_signing: bool = False
    ) -> dict[str, Any] | None:
        try:
            body = _read(self.store, key)
        except ObjectMissing:
            self.report.missing.append(key)
            return None
        actual = hashlib.sha256(body).hexdigest()
        if recorded_sha256 is not None and actual != recorded_sha256:
            self.report.altered.append(
                {
                    "key": key,
                    "problem": "the manifest differs from the one recorded in the database",
                    "expected_sha256": recorded_sha256,
                    "actual_sha256": actual,
                }
            )
        self._signature(key, body, predates_signing=predates_signing)
        try:
            manifest = json.loads(body)
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict):
            self.report.altered.append({"key": key, "problem": "manifest is not a JSON object"})
            return None
        return manifest

    def _signature(self, key: str, body: bytes, *, predates_signing: bool) -> None:
        if self.verifier is None:
            return
        self.report.signature = signature_status(
            self.store, key, body, self.verifier, predates_signing=predates_signing
        )

    def objects(self, sources: Mapping[str, Mapping[str, Expected]]) -> None:
        """Hash every object any source lists, once, and compare with each source."""
        keys = sorted({key for listed in sources.values() for key in listed})
        for key in keys:
            self.report.checked += 1
            try:
                found = self.digest(key)
            except ObjectMissing:
                self.report.missing.append(key)
                continue
            sha256, size = found.sha256, found.size
            disagree = [
                name
                for name, listed in sources.items()
                if key in listed and (listed[key].sha256, listed[key].size) != (sha256, size)
            ]
            absent = [name for name, listed in sources.items() if key not in listed]
            if disagree or absent:
                first = next(iter(s[key] for s in sources.values() if key in s))
                entry: dict[str, Any] = {
                    "key": key,
                    "expected_sha256": first.sha256,
                    "actual_sha256": sha256,
                    "expected_size": first.size,
                    "actual_size": size,
                }
                if disagree:
                    entry["differs_from"] = disagree
                if absent:
                    entry["not_listed_in"] = absent
                self.report.altered.append(entry)

    def ocfl_object(self, where: layout.JobLayout, listed: set[str]) -> set[str]:
        """Check the job's OCFL object against its inventory; the structure's keys.

        A file already reported (missing, or differing from the manifest or the database)
        is not reported again; one the manifest lists but the inventory does not is.
        """
        root = where.object_root
        assert root is not None
        structure = {
            f"{root}/{naming}"
            for naming in (
                ocfl_naming.OBJECT_DECLARATION,
                ocfl_inventory.INVENTORY,
                ocfl_inventory.SIDECAR,
                f"{ocfl_inventory.VERSION}/{ocfl_inventory.INVENTORY}",
                f"{ocfl_inventory.VERSION}/{ocfl_inventory.SIDECAR}",
            )
        }
        inventory_key = f"{root}/{ocfl_inventory.INVENTORY}"
        try:
            found = ocfl_objects.read(self.store, root)
        except ocfl_inventory.InventoryError as exc:
            self.report.altered.append({"key": inventory_key, "problem": str(exc)})
            return structure
        if found is None:
            self.report.missing.append(inventory_key)  # not committed: an incomplete object
            return structure
        if found.object_id != where.object_id:
            self.report.altered.append(
                {"key": inventory_key, "problem": f"the inventory names {found.object_id}"}
            )
        try:
            copy = _read(self.store, f"{root}/{ocfl_inventory.VERSION}/{ocfl_inventory.INVENTORY}")
            if copy != _read(self.store, inventory_key):
                self.report.altered.append(
                    {"key": inventory_key, "problem": "differs from the version's inventory"}
                )
        except ObjectMissing as exc:
            self.report.missing.append(str(exc))
        reported = {*self.report.missing, *(a["key"] for a in self.report.altered)}
        for path, sha512 in found.sha512.items():
            key = f"{root}/{path}"
            if key in reported:
                continue
            try:
                actual = self.digest(key).sha512
            except ObjectMissing:
                self.report.missing.append(key)
                continue
            if actual != sha512:
                self.report.altered.append(
                    {
                        "key": key,
                        "problem": "differs from the OCFL inventory",
                        "expected_sha512": sha512,
                        "actual_sha512": actual,
                    }
                )
        inventoried = {f"{root}/{path}" for path in found.sha512}
        self.report.altered.extend(
            {"key": key, "problem": "not in the OCFL inventory"}
            for key in sorted(listed - inventoried - reported)
            if key.startswith(f"{root}/")
        )
        return structure

    def unlisted(self, prefixes: Iterable[str], listed: set[str]) -> None:
        for prefix in prefixes:
            self.report.unlisted.extend(
                k for k in self.store.iter_keys(prefix + "/") if k not in listed
            )


def audit_job(
    store: ArchiveStore,
    job: Job,
    assets: Iterable[Asset] = (),
    verifier: Verifier | None = None,
) -> JobAudit:
    """Check an archived job's objects against its asset rows and its manifest."""
    report = JobAudit(job.id, job.manifest_key)
    if not job.manifest_key:
        report.error = "archived job has no manifest key"
        return report
    check = _Check(store, report, verifier)
    # Jobs archived before migration 0002 have no recorded digest and no signature.
    manifest = check.manifest(
        job.manifest_key, job.manifest_sha256, predates_signing=job.manifest_sha256 is None
    )
    rows = {a.key: Expected(a.sha256, a.size) for a in assets if a.key}
    listed_by_manifest = manifest_entries(manifest) if manifest is not None else {}
    # Derived objects (thumbnails) have no asset rows: checked against the manifest only,
    # so the database source lends them the manifest's entry rather than calling them absent.
    derived = manifest_entries(manifest, derived_only=True) if manifest is not None else {}
    sources: dict[str, Mapping[str, Expected]] = {
        "database": {**{k: v for k, v in derived.items() if k not in rows}, **rows},
    }
    if manifest is not None:
        sources["manifest"] = listed_by_manifest
    check.objects(sources)
    listed = {job.manifest_key, signature_key(job.manifest_key), *rows, *listed_by_manifest}
    # The directories of the layout the job was archived in (its manifest key says which:
    # a job of an earlier release is audited where it was written).
    where = layout.for_job(job, rows)
    if where.ocfl:
        listed |= check.ocfl_object(where, listed)
    check.unlisted(where.prefixes(), listed)
    return report


def audit_manifest(store: ArchiveStore, manifest_key: str, verifier: Verifier) -> JobAudit:
    """Check one archive from the bucket alone: the signature, then every object listed."""
    report = JobAudit(None, manifest_key)
    check = _Check(store, report, verifier)
    manifest = check.manifest(manifest_key, None)
    if manifest is None:
        return report
    job_id = manifest.get("job_id")
    report.job_id = job_id if isinstance(job_id, str) else None
    listed = manifest_entries(manifest)
    check.objects({"manifest": listed})
    # The job's directory and its quarantine directory, in whichever layout it was written.
    where = layout.parse(manifest_key)
    directories: tuple[str, ...] = (manifest_key.rsplit("/", 1)[0],)
    expected = {manifest_key, signature_key(manifest_key), *listed}
    if where is not None and where.manifest_key() == manifest_key:
        directories = where.prefixes()
        if where.ocfl:
            expected |= check.ocfl_object(where, expected)
    check.unlisted(directories, expected)
    return report


def bucket_manifests(store: ArchiveStore) -> Iterator[str]:
    """Every manifest under the archive root, in both layouts (layout.py).

    One listing of the whole root finds them all: the projects' (``projects/{slug}/…``) and
    those of earlier releases (``{YYYY}/…``). Quarantine directories hold images, never
    manifests.
    """
    for key in store.iter_keys(""):
        if key.rsplit("/", 1)[-1] == MANIFEST_NAME and not layout.is_quarantined(key):
            yield key


def archived_jobs(
    db: Database, *, since: datetime | None = None, job_id: str | None = None
) -> tuple[int, Iterator[Job]]:
    """How many archived jobs match, and the jobs themselves in id order (paged)."""
    where = [Job.status == JobStatus.ARCHIVED.value]
    if since is not None:
        where.append(Job.created_at >= since)
    if job_id is not None:
        where.append(Job.id == job_id)
    with db.transaction() as session:
        total = session.execute(select(func.count()).select_from(Job).where(*where)).scalar_one()

    def pages() -> Iterator[Job]:
        after = ""
        while True:
            with db.transaction() as session:
                batch = list(
                    session.execute(
                        select(Job).where(*where, Job.id > after).order_by(Job.id).limit(500)
                    ).scalars()
                )
            if not batch:
                return
            yield from batch
            after = batch[-1].id

    return int(total), pages()


def asset_rows(db: Database, job_id: str) -> list[Asset]:
    with db.transaction() as session:
        rows = list(session.execute(select(Asset).where(Asset.job_id == job_id)).scalars())
        session.expunge_all()
    return rows


Progress = Callable[[int, int, int], None]


def audit_archived_job(
    db: Database, store: ArchiveStore, job: Job, verifier: Verifier | None
) -> JobAudit:
    """Audit one job against its rows and manifest; a problem becomes an `audit.failed` event."""
    report = audit_job(store, job, asset_rows(db, job.id), verifier)
    if not report.ok:
        outbox.audit_failed(db, job.id, report.as_json())
    return report


def run_audit(
    db: Database,
    store: ArchiveStore,
    *,
    verifier: Verifier | None = None,
    since: datetime | None = None,
    job_id: str | None = None,
    progress: Progress | None = None,
) -> list[JobAudit]:
    total, jobs = archived_jobs(db, since=since, job_id=job_id)
    reports: list[JobAudit] = []
    problems = 0
    for done, job in enumerate(jobs, start=1):
        report = audit_archived_job(db, store, job, verifier)
        reports.append(report)
        problems += not report.ok
        if progress is not None:
            progress(done, total, problems)
    return reports


def run_bucket_audit(
    store: ArchiveStore, verifier: Verifier, *, progress: Progress | None = None
) -> list[JobAudit]:
    manifests = list(bucket_manifests(store))
    reports: list[JobAudit] = []
    problems = 0
    for done, key in enumerate(manifests, start=1):
        report = audit_manifest(store, key, verifier)
        reports.append(report)
        problems += not report.ok
        if progress is not None:
            progress(done, len(manifests), problems)
    return reports
