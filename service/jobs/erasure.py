"""Erasing a job on request (``DELETE /v1/jobs/{id}``, `genvault jobs delete`).

In this order, so that no step leaves a state the next run cannot finish:

1. Refuse a job still in flight (the archive would write its objects again); a job already
   erased is answered as it is, with nothing done twice.
2. List every object of the job: each directory ``layout.for_job(...).prefixes()`` names,
   every version on a versioned bucket. Ask the store what Object Lock keeps: if anything is
   retained, refuse (409 with the date it can go) before anything is removed.
3. Write the signed tombstone (who, when, why, and the digest of each object) outside the
   OCFL storage roots.
4. Remove the objects, the manifest and its signature first: from then on no reader (audit,
   reindex) takes what is left for a complete job.
5. One transaction: the job reads ``deleted`` with ``deleted_at``; its asset rows, its
   provider callbacks (bodies with prompts and output URLs) and its params and metadata go;
   its queued tasks end; earlier events of the job lose their metadata; ``job.deleted``
   goes out and its ``job.delete`` audit row commits with it.

A crash anywhere before step 5 leaves the job as it was in the database: the same request
again lists what is left, keeps the tombstone already written and finishes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.access import audit_log
from service.access.audit_log import AuditAction, Origin
from service.archive import layout, tombstone
from service.archive.tombstone import Removed
from service.db.models import Asset, Callback, Event, Job, Task
from service.db.session import Database
from service.db.types import utcnow
from service.errors import Conflict, Retained
from service.events import outbox
from service.events.types import EventType
from service.jobs import records
from service.jobs.states import JobStatus
from service.security.signing import Signer, signature_key
from service.storage.base import ArchiveStore, ObjectMissing, Retention, StorageError
from service.tasks.status import TaskStatus

log = logging.getLogger(__name__)

MAX_REASON = 1000


@dataclass(frozen=True)
class Erasure:
    """What an erasure did. ``already``: the job had been erased before; nothing was done."""

    job_id: str
    project: str
    tombstone_key: str
    removed: tuple[Removed, ...] = ()
    already: bool = False


def erase_job(
    db: Database,
    store: ArchiveStore,
    signer: Signer,
    job_id: str,
    *,
    actor: str,
    reason: str,
    origin: Origin,
) -> Erasure:
    """Erase ``job_id`` (see the module's steps); Conflict or Retained when it cannot be.

    ``actor`` names who asks, as the audit log does, and ``origin`` where from: the
    ``job.delete`` audit row commits in the transaction that marks the job deleted (the API
    and the dashboard alike), or neither does.
    """
    with db.transaction() as session:
        job = records.get_job(session, job_id)
        keys = session.execute(select(Asset.key).where(Asset.job_id == job_id)).scalars().all()
    where = tombstone.tombstone_key(job.project, job.id)
    if job.status is JobStatus.DELETED:
        return Erasure(job.id, job.project, where, already=True)
    _refuse_in_flight(job.status)

    current, stored = _list(store, layout.for_job(job, keys).prefixes())
    _refuse_retained(store, stored)
    removed = [
        _describe(store, key) if key in current else Removed(key, None, None) for key in stored
    ]
    at = utcnow()
    data = tombstone.render(job, actor=actor, at=at, reason=reason, removed=removed)
    tombstone.write(store, signer, where, data, job.id)
    _remove(store, _manifest_first(stored, job.manifest_key))
    done = Erasure(job.id, job.project, where, tuple(removed))

    with db.transaction() as session:
        job = records.get_job(session, job_id, for_update=True)
        if job.status is JobStatus.DELETED:
            # A concurrent erasure finished first: its event and audit row are the ones.
            return Erasure(job.id, job.project, where, already=True)
        # Retried while being erased: it would archive again into the erased directories.
        _refuse_in_flight(job.status, during=True)
        _mark_deleted(session, job, at)
        data_out = {**outbox.job_snapshot(session, job), "tombstone_key": where}
        outbox.emit(session, EventType.JOB_DELETED, data_out, project=job.project, job_id=job.id)
        audit_log.record(
            session,
            AuditAction.JOB_DELETE,
            actor=actor,
            project=job.project,
            target=job.id,
            origin=origin,
            changes={
                "reason": reason,
                "objects_removed": len(done.removed),
                "tombstone": done.tombstone_key,
            },
        )
    log.info("job erased", extra={"job_id": job_id, "objects": len(removed)})
    return done


def _refuse_in_flight(status: JobStatus, *, during: bool = False) -> None:
    if status.terminal:
        return
    when = "was retried while it was being erased" if during else f"is {status}"
    raise Conflict(
        f"the job {when}: a job still in flight would be archived again; erase it once it "
        "is archived or failed"
    )


def _list(store: ArchiveStore, prefixes: Iterable[str]) -> tuple[set[str], list[str]]:
    """The job's current objects, and every key holding anything (older versions too)."""
    current: set[str] = set()
    stored: list[str] = []
    for prefix in prefixes:
        # The trailing "/": a directory, never a sibling whose name merely starts the same.
        current.update(store.iter_keys(prefix + "/"))
        stored += store.versioned_keys(prefix + "/")
    stored += sorted(current - set(stored))
    return current, stored


def _refuse_retained(store: ArchiveStore, keys: Iterable[str]) -> None:
    """Retained (409) naming the date everything may go, when Object Lock keeps any of it."""
    kept: list[Retention] = [r for key in keys if (r := store.retention(key)) is not None]
    if not kept:
        return
    dated = [r.until for r in kept if r.until is not None]
    until = max(dated) if dated else None
    modes = sorted({r.mode for r in kept if r.mode})
    what = f"{len(kept)} object(s) of this job are under S3 Object Lock"
    what += f" ({', '.join(modes)})" if modes else ""
    if any(r.legal_hold for r in kept):
        what += "; some under a legal hold, which has no date: it must be lifted first"
    if until is not None:
        what += f"; they can be removed after {until.isoformat()}"
    raise Retained(f"{what}. Nothing was removed.", until=until)


def _describe(store: ArchiveStore, key: str) -> Removed:
    """Key, SHA-256 and size of an object about to go (the digest read if none is stored)."""
    try:
        info = store.head(key)
    except ObjectMissing:
        return Removed(key, None, None)
    digest = info.sha256
    if digest is None:
        sha = hashlib.sha256()
        with store.open(key) as stream:
            while chunk := stream.read(1024 * 1024):
                sha.update(chunk)
        digest = sha.hexdigest()
    return Removed(key, digest, info.size)


def _manifest_first(keys: list[str], manifest_key: str | None) -> list[str]:
    first = {manifest_key, signature_key(manifest_key)} if manifest_key else set()
    return sorted(keys, key=lambda key: key not in first)


def _remove(store: ArchiveStore, keys: list[str]) -> None:
    for done, key in enumerate(keys):
        try:
            store.delete(key)
        except StorageError as exc:
            raise Conflict(
                f"the erasure stopped after {done} of {len(keys)} objects ({exc.message}); "
                "the tombstone is written and the job unchanged: send the same request again"
            ) from exc


def _mark_deleted(session: Session, job: Job, at: datetime) -> None:
    """The row stays (the id still answers); what identifies the content goes."""
    # The one sanctioned move out of archived or failed, hence set directly, not advanced.
    job.status = JobStatus.DELETED
    job.deleted_at = at
    job.updated_at = at
    job.params = {}
    job.meta = {}
    job.manifest_key = None
    job.manifest_sha256 = None
    job.fetch_url = None
    job.result_callback_id = None
    session.execute(delete(Asset).where(Asset.job_id == job.id))
    session.execute(delete(Callback).where(Callback.job_id == job.id))
    # A poll still scheduled would ask the provider again and store its answer (the output
    # URLs) as a new callback: the job's queued tasks end here.
    session.execute(
        update(Task)
        .where(Task.job_id == job.id, Task.status == TaskStatus.QUEUED)
        .values(status=TaskStatus.DONE, last_error="the job was erased", updated_at=at)
    )
    # Earlier events of the job keep their shape for their deliveries; their metadata goes.
    for event in session.execute(select(Event).where(Event.job_id == job.id)).scalars():
        if event.data.get("metadata"):
            event.data = {**event.data, "metadata": {}}
    session.flush()
