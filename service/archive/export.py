"""`genvault export --bag DIR`: chosen archived jobs as a BagIt bag (RFC 8493, BagIt 1.0).

What goes in is read from the database, never from a key layout (layouts change): each job's
asset rows that hold a key (outputs, quarantined ones included, inputs, thumbnails), its
manifest and the manifest's signature. Each lands under ``data/{job_id}/`` at its path
relative to the job's directory (the longest directory all the job's keys share), streamed
from the store with its SHA-512 and SHA-256 computed on the way; the SHA-256 must match the
one on record (the asset row, the job's manifest_sha256, else the store's own), or nothing
is exported.

The bag is built in a hidden directory beside DIR and renamed into place when complete, so
DIR never holds half a bag. A date range selects by ``created_at`` (UTC, both ends
inclusive), the date the dashboard and ``genvault audit --since`` go by.
"""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select

from service import __version__
from service.db.enums import JobStatus
from service.db.models import Asset, Job
from service.db.session import Database
from service.errors import GenvaultError
from service.security.signing import signature_key
from service.storage.base import ArchiveStore

CHUNK = 1024 * 1024
ALGORITHMS = ("sha512", "sha256")


class ExportError(GenvaultError):
    """The bag could not be exported."""


@dataclass(frozen=True)
class Selection:
    """Which jobs: ``job_ids``, or those created from ``first`` to ``last`` (inclusive)."""

    job_ids: tuple[str, ...] = ()
    first: date | None = None
    last: date | None = None
    project: str | None = None

    def describe(self) -> str:
        if self.job_ids:
            said = f"jobs {', '.join(self.job_ids)}"
        else:
            said = f"jobs created {self.first} to {self.last} (UTC, inclusive)"
        return said + (f" of project {self.project}" if self.project else "")


@dataclass(frozen=True)
class _Object:
    key: str
    path: str  # relative to the bag, data/{job_id}/…
    sha256: str | None  # on record; None: ask the store


@dataclass
class BagReport:
    jobs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0


# One line about the work, for stderr.
Progress = Callable[[str], None]


def export_bag(
    db: Database,
    store: ArchiveStore,
    selection: Selection,
    target: Path,
    *,
    progress: Progress = lambda _line: None,
    today: date | None = None,
) -> BagReport:
    """Write the selected archived jobs as a bag at ``target`` (absent or an empty directory)."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"{target} exists and is not an empty directory")
    report = BagReport()
    plan: list[list[_Object]] = []  # by job
    for job, assets in _jobs(db, selection):
        why = _not_exportable(job)
        if why:
            report.skipped.append(job.id)
            progress(f"skipped {job.id}: {why}")
            continue
        report.jobs.append(job.id)
        plan.append(_objects(job, assets))
    if not report.jobs:
        raise ExportError(f"no archived job to export ({selection.describe()})")
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        sums: dict[str, list[tuple[str, str]]] = {name: [] for name in ALGORITHMS}
        for n, (job_id, objects) in enumerate(zip(report.jobs, plan, strict=True), start=1):
            for obj in objects:
                digests, size = _copy(store, obj, building / obj.path)
                for name in ALGORITHMS:
                    sums[name].append((digests[name], obj.path))
                report.files += 1
                report.bytes += size
            progress(f"{n}/{len(plan)} jobs: {job_id}, {len(objects)} objects")
        _write_tags(building, sums, report, selection, today or datetime.now(UTC).date())
        building.chmod(0o755)  # mkdtemp made it private; the bag is meant to be handed over
        # rename(2) replaces an empty directory, so an empty DIR given by the user is fine.
        building.rename(target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return report


def _jobs(db: Database, selection: Selection) -> Iterable[tuple[Job, list[Asset]]]:
    where = []
    if selection.project:
        where.append(Job.project == selection.project)
    if selection.job_ids:
        where.append(Job.id.in_(selection.job_ids))
    else:
        if selection.first is None or selection.last is None:
            raise ExportError("name jobs with --job, or a range with --from and --to")
        start = datetime.combine(selection.first, time(), UTC)
        end = datetime.combine(selection.last + timedelta(days=1), time(), UTC)
        where += [Job.created_at >= start, Job.created_at < end]
    with db.transaction() as session:
        ids = list(session.execute(select(Job.id).where(*where).order_by(Job.id)).scalars())
    unknown = sorted(set(selection.job_ids) - set(ids))
    if unknown:
        where_said = f" in project {selection.project}" if selection.project else ""
        raise ExportError(f"no such job{where_said}: {', '.join(unknown)}")
    for job_id in ids:  # one at a time: a range may hold many jobs
        with db.transaction() as session:
            job = session.get_one(Job, job_id)
            rows = session.execute(
                select(Asset).where(Asset.job_id == job_id).order_by(Asset.id)
            ).scalars()
            yield job, list(rows)


def _not_exportable(job: Job) -> str | None:
    if job.deleted_at is not None or job.status == JobStatus.DELETED:
        return "deleted"
    if job.status != JobStatus.ARCHIVED or not job.manifest_key:
        return f"not archived ({job.status})"
    return None


def _objects(job: Job, assets: list[Asset]) -> list[_Object]:
    assert job.manifest_key is not None
    recorded: dict[str, str | None] = {}
    for asset in assets:
        if asset.key is None:  # an output the NSFW policy skipped: never stored
            continue
        if recorded.get(asset.key, asset.sha256) != asset.sha256:
            raise ExportError(f"job {job.id}: two digests on record for {asset.key}")
        recorded[asset.key] = asset.sha256
    recorded[job.manifest_key] = job.manifest_sha256
    recorded[signature_key(job.manifest_key)] = None
    base = posixpath.commonpath([posixpath.dirname(key) for key in recorded])
    objects = []
    for key in sorted(recorded):
        rel = posixpath.relpath(key, base) if base else key
        if rel.startswith("../") or posixpath.isabs(rel):
            raise ExportError(f"job {job.id}: unexpected key {key}")
        objects.append(_Object(key, f"data/{job.id}/{rel}", recorded[key]))
    return objects


def _copy(store: ArchiveStore, obj: _Object, path: Path) -> tuple[dict[str, str], int]:
    """Stream ``obj`` to ``path``; its digests and size, checked against the record."""
    expected = obj.sha256 or store.head(obj.key).sha256
    hashers = {name: hashlib.new(name) for name in ALGORITHMS}
    size = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.open(obj.key) as body, path.open("xb") as out:
        while chunk := body.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(chunk)
            size += len(chunk)
            out.write(chunk)
    digests = {name: hasher.hexdigest() for name, hasher in hashers.items()}
    if expected and digests["sha256"] != expected.lower():
        raise ExportError(
            f"{obj.key}: its bytes hash to sha256 {digests['sha256']}, the record says "
            f"{expected.lower()}; nothing exported (run `genvault audit`)"
        )
    return digests, size


def _encode(path: str) -> str:
    """A payload path as a manifest line holds it (RFC 8493 2.1.3: %, CR and LF encoded)."""
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _manifest(lines: list[tuple[str, str]]) -> str:
    return "".join(f"{digest}  {_encode(path)}\n" for digest, path in sorted(lines, key=_by_path))


def _by_path(line: tuple[str, str]) -> str:
    return line[1]


def _write_tags(
    bag: Path,
    sums: dict[str, list[tuple[str, str]]],
    report: BagReport,
    selection: Selection,
    today: date,
) -> None:
    tags = {"bagit.txt": "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"}
    for name in ALGORITHMS:
        tags[f"manifest-{name}.txt"] = _manifest(sums[name])
    tags["bag-info.txt"] = (
        "Source-Organization: genvault\n"
        f"External-Description: genvault archive export of {len(report.jobs)} archived "
        f"job(s): {selection.describe()}\n"
        f"Bagging-Date: {today.isoformat()}\n"
        f"Payload-Oxum: {report.bytes}.{report.files}\n"
        f"Bag-Software-Agent: genvault {__version__}\n"
    )
    for name, text in tags.items():
        (bag / name).write_text(text, encoding="utf-8", newline="\n")
    for name in ALGORITHMS:
        lines = [
            (hashlib.new(name, (bag / tag).read_bytes()).hexdigest(), tag) for tag in sorted(tags)
        ]
        (bag / f"tagmanifest-{name}.txt").write_text(_manifest(lines), newline="\n")
