"""`genvault audit`: re-read archived objects and check them against their manifests.

For every archived job it reports objects the manifest lists that are gone (missing),
objects whose bytes no longer hash to the manifest's SHA-256 or size (altered), and
objects under the job's prefix that the manifest does not list (unlisted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from service.archive import layout
from service.db.models import Job
from service.db.session import Database
from service.jobs.states import JobStatus
from service.storage.base import ArchiveStore, ObjectMissing

CHUNK = 1024 * 1024


@dataclass
class JobAudit:
    job_id: str
    manifest_key: str | None
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    altered: list[dict[str, Any]] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.altered or self.unlisted or self.error)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def _digest(store: ArchiveStore, key: str) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with store.open(key) as stream:
        while chunk := stream.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def audit_job(store: ArchiveStore, job: Job) -> JobAudit:
    report = JobAudit(job.id, job.manifest_key)
    if not job.manifest_key:
        report.error = "archived job has no manifest key"
        return report
    try:
        with store.open(job.manifest_key) as stream:
            manifest = json.loads(stream.read())
    except ObjectMissing:
        report.missing.append(job.manifest_key)
        return report
    except ValueError:
        report.altered.append({"key": job.manifest_key, "problem": "manifest is not valid JSON"})
        return report

    listed = {job.manifest_key}
    for entry in [*manifest.get("assets", []), *manifest.get("inputs", [])]:
        key = entry.get("key")
        if not key:
            continue  # skipped by the NSFW policy, or an input that could not be fetched
        listed.add(key)
        report.checked += 1
        try:
            sha256, size = _digest(store, key)
        except ObjectMissing:
            report.missing.append(key)
            continue
        if sha256 != entry.get("sha256") or size != entry.get("size"):
            report.altered.append(
                {
                    "key": key,
                    "expected_sha256": entry.get("sha256"),
                    "actual_sha256": sha256,
                    "expected_size": entry.get("size"),
                    "actual_size": size,
                }
            )
    for prefix in (
        layout.job_prefix(job.created_at, job.id),
        layout.job_prefix(job.created_at, job.id, quarantine=True),
    ):
        report.unlisted.extend(k for k in store.iter_keys(prefix + "/") if k not in listed)
    return report


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


def run_audit(
    db: Database,
    store: ArchiveStore,
    *,
    since: datetime | None = None,
    job_id: str | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[JobAudit]:
    total, jobs = archived_jobs(db, since=since, job_id=job_id)
    reports: list[JobAudit] = []
    problems = 0
    for done, job in enumerate(jobs, start=1):
        report = audit_job(store, job)
        reports.append(report)
        problems += not report.ok
        if progress is not None:
            progress(done, total, problems)
    return reports


def run_audit_cli(args: argparse.Namespace) -> int:
    from service.config import load_settings
    from service.db.session import make_engine
    from service.events import outbox
    from service.wiring import build_store

    settings = load_settings(require_secrets=False)
    settings.require("secret_key")
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since).replace(tzinfo=UTC)
        except ValueError:
            print(
                f"genvault audit: --since wants a date like 2026-01-31, got {args.since!r}",
                file=sys.stderr,
            )
            return 2
    db = Database(make_engine(settings.database_url))
    store = build_store(settings)
    last = 0.0

    def progress(done: int, total: int, problems: int) -> None:
        nonlocal last
        now = time.monotonic()
        if sys.stderr.isatty() or now - last >= 5 or done == total:
            last = now
            print(f"audited {done}/{total} jobs, {problems} with problems", file=sys.stderr)

    reports = run_audit(db, store, since=since, job_id=args.job, progress=progress)
    bad = [r for r in reports if not r.ok]
    for report in bad:
        outbox.audit_failed(db, report.job_id, report.as_json())
    for report in reports if not args.quiet else bad:
        print(json.dumps(report.as_json()))
    checked = sum(r.checked for r in reports)
    print(
        f"{len(reports)} jobs, {checked} objects checked: {len(bad)} jobs with problems "
        f"({sum(len(r.missing) for r in bad)} missing, {sum(len(r.altered) for r in bad)} altered,"
        f" {sum(len(r.unlisted) for r in bad)} unlisted)",
        file=sys.stderr,
    )
    db.dispose()
    return 1 if bad else 0
