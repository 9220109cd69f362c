"""Reindex: rebuild the jobs and their assets from the archive alone (`genvault reindex`).

For a database that was lost: a fresh `genvault migrate`, then this. It finds every job the
archive holds (layout.py): each committed OCFL object under ``projects/{slug}/`` (its root
``inventory.json``), and each manifest of the dated layouts of earlier releases; and trusts
none before checking it as ``audit --bucket-only`` does (audit.audit_manifest): the
manifest's Ed25519 signature, every object it lists by SHA-256 and size, nothing unlisted
beside them, and for an object its inventory against its sidecar, its id, and every content
file's SHA-512. The signed manifest must also name the job, object and project where it was
found. What fails is reported with its reasons and not imported.

An object without its root inventory was never committed (an archive that did not finish:
the job was not archived); it is counted as incomplete, not imported, and not an error.

A job with a tombstone (``tombstones/{project}/{job_id}.json``, jobs/erasure.py) was erased:
nothing of it comes back but, when the tombstone's signature holds, its row as ``deleted``
so its id still answers. An unsigned tombstone is reported, and its job left out all the
same: an erasure stopped before signing must not be undone by a reindex.

A job already in the database is skipped before any of its objects is read, so a second run,
or one after an interruption, does only what is left. Each batch commits on its own.

The jobs of a batch are checked side by side (``parallel`` at a time): checking is reading
every file of the job back, and on S3 each read waits a round trip, so one job at a time
left the command waiting on one socket (bench/reindex_throughput.py). What a batch found is
reported and inserted in job order whatever the timing, so two runs report alike.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.archive import audit, layout
from service.archive.ocfl import inventory
from service.archive.reindex_rows import Record, from_manifest, from_tombstone
from service.archive.tombstone import TOMBSTONES
from service.db.models import DEFAULT_PROJECT, Asset, Callback, Job, Project
from service.db.session import Database
from service.db.types import utcnow
from service.jobs.states import JobStatus
from service.security.signing import BadSignature, Verifier, signature_key
from service.storage.base import ArchiveStore, ObjectMissing

BATCH = 50
# Jobs checked at once. Each check is mostly waiting on the store (S3's round trips); the
# rest is hashing, which releases the GIL. Eight kept a 20 ms round trip's waits covered.
PARALLEL = 8
CREATED_BY = "reindex"
_TOMBSTONE_KEY = re.compile(rf"^{TOMBSTONES}/(?P<project>[^/]+)/(?P<job>[A-Za-z0-9_-]+)\.json$")


@dataclass(frozen=True)
class Problem:
    """An object (or tombstone) that could not be trusted, and why."""

    key: str
    job_id: str | None
    reasons: list[str]


@dataclass
class Report:
    total: int = 0  # jobs found
    imported: int = 0
    skipped: int = 0  # already in the database
    erased: int = 0  # recreated as deleted from a signed tombstone
    incomplete: list[str] = field(default_factory=list)  # object roots never committed
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


Progress = Callable[[int, Report], None]


@dataclass
class Found:
    """What the archive holds of one job: its layouts (the object first), which objects are
    committed, and its tombstone."""

    layouts: list[layout.JobLayout] = field(default_factory=list)
    committed: set[str] = field(default_factory=set)
    tombstone: str | None = None


def find(store: ArchiveStore, project: str | None = None) -> dict[str, Found]:
    """Every job of the archive (of ``project``; root-layout jobs are ``default``'s), by id."""
    keys: Iterable[str]
    if project is None or project == DEFAULT_PROJECT:
        keys = store.iter_keys("")  # one listing, the root layout's jobs included
    else:
        keys = itertools.chain(
            store.iter_keys(f"{layout.project_prefix(project)}/"),
            store.iter_keys(f"{TOMBSTONES}/{project}/"),
        )
    found: dict[str, Found] = {}
    for key in keys:
        stone = _TOMBSTONE_KEY.match(key)
        if stone is not None:
            if project in (None, stone["project"]):
                found.setdefault(stone["job"], Found()).tombstone = key
            continue
        where = layout.parse(key)
        if where is None or project not in (None, where.project or DEFAULT_PROJECT):
            continue
        # An object by any of its keys (so one never committed is counted); a dated job by
        # its manifest, which every other key of its directories is checked against.
        if where.ocfl or key == where.manifest_key():
            entry = found.setdefault(where.job_id, Found())
            if where not in entry.layouts:
                entry.layouts.append(where)
            if key == f"{where.object_root}/{inventory.INVENTORY}":
                entry.committed.add(key.rsplit("/", 1)[0])
    for entry in found.values():
        entry.layouts.sort(key=lambda w: not w.ocfl)
    return found


def reindex(
    db: Database,
    store: ArchiveStore,
    verifier: Verifier,
    *,
    project: str | None = None,
    batch: int = BATCH,
    parallel: int = PARALLEL,
    progress: Progress | None = None,
) -> Report:
    """Import every trusted job of the archive that the database lacks; see the module."""
    if parallel < 1:
        raise ValueError("parallel must be at least 1")
    found = find(store, project)
    ids = sorted(found)  # job ids begin with their time: oldest first
    report = Report(total=len(ids))

    def assess(job_id: str) -> Assessment:
        return _assess(store, verifier, job_id, found[job_id])

    with ThreadPoolExecutor(parallel, "reindex") as pool:
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            with db.transaction() as session:
                known = set(session.execute(select(Job.id).where(Job.id.in_(chunk))).scalars())
            report.skipped += len(known)
            records: list[Record] = []
            # map() hands the results back in job order, whichever finished first.
            for checked in pool.map(assess, [j for j in chunk if j not in known]):
                report.incomplete += checked.incomplete
                report.problems += checked.problems
                if checked.record is not None:
                    records.append(checked.record)
            _insert(db, records, report)
            if progress is not None:
                progress(start + len(chunk), report)
    return report


@dataclass
class Assessment:
    """One job checked: its rows when trusted, and what was found wrong on the way."""

    record: Record | None = None
    problems: list[Problem] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


def _assess(store: ArchiveStore, verifier: Verifier, job_id: str, found: Found) -> Assessment:
    """The job's rows, from its tombstone or its first trusted layout, and its problems."""
    out = Assessment()
    if found.tombstone is not None:
        # Erased: whatever may be left of its objects stays out, tombstone trusted or not.
        outcome = _tombstone(store, verifier, found.tombstone, job_id)
        if isinstance(outcome, Problem):
            out.problems.append(outcome)
        else:
            out.record = outcome
        return out
    for where in found.layouts:
        if where.ocfl and where.object_root not in found.committed:
            out.incomplete.append(str(where.object_root))
            continue
        checked = verify(store, verifier, where)
        if isinstance(checked, Record):
            out.record = checked
            return out
        out.problems.append(checked)
    return out


def verify(store: ArchiveStore, verifier: Verifier, where: layout.JobLayout) -> Record | Problem:
    """Check one job where it was found; its rows when everything holds."""
    manifest_key = where.manifest_key()
    subject = where.object_root or manifest_key
    reasons = _reasons(audit.audit_manifest(store, manifest_key, verifier))
    if reasons:
        return Problem(subject, where.job_id, reasons)
    # Read again for the rows, and its signature checked again: what is imported is what
    # was verified, even if the manifest was replaced since the audit read it.
    try:
        body = _read(store, manifest_key)
    except ObjectMissing:
        return Problem(subject, where.job_id, [f"missing {manifest_key}"])
    status = audit.signature_status(store, manifest_key, body, verifier, predates_signing=False)
    if status != audit.SIGNATURE_VALID:
        return Problem(subject, where.job_id, [f"signature {status}"])
    try:
        return from_manifest(where, manifest_key, body)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Problem(subject, where.job_id, [f"manifest {manifest_key}: {exc}"])


def _reasons(checked: audit.JobAudit) -> list[str]:
    reasons = [f"missing {key}" for key in checked.missing]
    for entry in checked.altered:
        problem = entry.get("problem") or (
            f"sha256 {entry.get('actual_sha256')} size {entry.get('actual_size')}, "
            f"the manifest says sha256 {entry.get('expected_sha256')} "
            f"size {entry.get('expected_size')}"
        )
        reasons.append(f"altered {entry['key']}: {problem}")
    reasons += [f"unlisted {key}" for key in checked.unlisted]
    if checked.signature != audit.SIGNATURE_VALID:
        reasons.append(f"signature {checked.signature}")
    if checked.error:
        reasons.append(checked.error)
    return reasons


def _tombstone(store: ArchiveStore, verifier: Verifier, key: str, job_id: str) -> Record | Problem:
    """An erased job's row from its tombstone, once its signature holds."""
    try:
        data = _read(store, key)
        verifier.verify(data, _read(store, signature_key(key)))
        return from_tombstone(key, data, job_id, key.split("/")[1])
    except ObjectMissing as exc:
        return Problem(key, job_id, [f"tombstone: missing {exc}"])
    except BadSignature as exc:
        return Problem(key, job_id, [f"tombstone: signature invalid: {exc}"])
    except (ValueError, KeyError, TypeError) as exc:
        return Problem(key, job_id, [f"tombstone: unreadable: {exc}"])


def _read(store: ArchiveStore, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def _insert(db: Database, records: list[Record], report: Report) -> None:
    """One transaction for the batch; on a conflict, one each, to name the job that clashes."""
    if not records:
        return
    try:
        with db.transaction() as session:
            for record in records:
                _add(session, record)
    except IntegrityError:
        for record in records:
            try:
                with db.transaction() as session:
                    _add(session, record)
            except IntegrityError as exc:
                reason = f"conflicts with a row in the database: {exc.orig}"
                report.problems.append(Problem(record.key, record.job["id"], [reason]))
            else:
                _count(report, record)
        return
    for record in records:
        _count(report, record)


def _count(report: Report, record: Record) -> None:
    if record.job["status"] is JobStatus.DELETED:
        report.erased += 1
    else:
        report.imported += 1


def _add(session: Session, record: Record) -> None:
    slug = record.job["project"]
    if session.get(Project, slug) is None:
        session.add(Project(slug=slug, name=slug, created_by=CREATED_BY, created_at=utcnow()))
        session.flush()
    job_id = record.job["id"]
    session.add(Job(**record.job))
    # No result_callback_id: setting it would update the row, and its updated_at with it;
    # the archive reads the newest success without it (results.latest_success).
    session.flush()  # the callback and the assets refer to the job
    if record.callback is not None:
        session.add(Callback(job_id=job_id, **record.callback))
    session.add_all(Asset(job_id=job_id, **values) for values in record.assets)
