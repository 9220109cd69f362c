"""The archive use-case: outputs (download → verify → store), then inputs, then the manifest.

Outputs first, always: every output is downloaded and verified into a private temporary
directory, and only when all of them pass do they reach the store, so a bad output leaves
nothing half-archived. Then the inputs (init images), one by one: they are part of the record
but not of the result, so an input that cannot be had for any reason (404, refused, too
large, timeout, not an image) is listed in the manifest with its reason and never holds the
outputs back. Storing is write-once and keyed deterministically, so a task that runs twice (a
replayed webhook, a worker that died mid-way) ends with the same objects. The manifest comes
last, signed (manifest.json.sig), and its SHA-256 is recorded on the job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from PIL import Image
from sqlalchemy import select

from service import metrics
from service.archive import layout, manifest, provenance, thumbnails
from service.archive.base64_images import decode_base64_file, write_data_uri
from service.archive.image_checks import ImageInfo, verify_image
from service.archive.ocfl import objects as ocfl_objects
from service.archive.parallel import in_parallel
from service.config import NsfwPolicy
from service.db.models import Asset, Callback, Job, Project
from service.db.session import Database
from service.db.types import utcnow
from service.errors import PermanentError, TaskError, TransientError
from service.fetch.policy import DownloadRefused
from service.jobs import records, results
from service.jobs.states import JobStatus
from service.providers.base import ProviderResult, ResultStatus
from service.providers.endpoints import expected_size, get_endpoint
from service.security.redaction import describe_source, is_summary, summary_text
from service.security.signing import Signer, signature_key
from service.storage.base import ArchiveStore, ObjectExists
from service.tasks.queue import ClaimedTask

log = logging.getLogger(__name__)


# Asks the job's provider for its current result (the fetch endpoint).
Confirm = Callable[[Job], ProviderResult]


class Fetcher(Protocol):
    def fetch(self, url: str, dest: Path) -> Any: ...


@dataclass(frozen=True)
class Staged:
    """An image downloaded and verified, waiting in the temporary directory to be stored."""

    role: str
    index: int
    source_url: str
    path: Path
    sha256: str
    size: int
    info: ImageInfo
    # Its thumbnail, rendered from the pixels verification decoded (see ImageStager.stage).
    preview: thumbnails.Preview | None = None
    # An output's C2PA Content Credentials as read now (provenance.py); None for inputs.
    credentials: dict[str, Any] | None = None


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


def input_urls(job: Job) -> list[str | dict[str, Any]]:
    """The job's input images (init_image, image_url, …) in a stable order.

    Each is a URL, or the summary an inline input left when it was archived at acceptance.
    """
    urls: list[str | dict[str, Any]] = []
    for name in get_endpoint(job.endpoint).input_fields:
        value = job.params.get(name)
        for item in value if isinstance(value, list) else [value]:
            if (isinstance(item, str) and item) or (isinstance(item, dict) and is_summary(item)):
                urls.append(item)
    return urls


class ImageStager:
    """Turns an image location (URL, base64 file URL, data: URI) into a verified local file."""

    def __init__(self, fetcher: Fetcher, limits: ImageLimits) -> None:
        self.fetcher = fetcher
        self.limits = limits

    def stage(
        self,
        role: str,
        index: int,
        url: str,
        workdir: Path,
        *,
        base64_file: bool,
        preview: bool = False,
    ) -> Staged:
        """Download (or decode) and verify; with ``preview``, also render its thumbnail.

        The thumbnail comes from the pixels the check has just decoded: decoding is most of
        a thumbnail's cost, and an image too large to decode whole in memory gets none here
        (the thumbnailer renders it from the file later).
        """
        raw = workdir / f"{role}-{index}.download"
        declared: str | None = None
        if url.startswith("data:"):
            size, sha256 = write_data_uri(url, raw, self.limits.max_bytes)
            path = raw
        else:
            got = self.fetcher.fetch(url, raw)
            path, size, sha256, declared = got.path, got.size, got.sha256, got.content_type
            if base64_file or url.split("?", 1)[0].endswith(".base64"):
                # ModelsLab's base64 mode serves a text file of image data: archive the image.
                path = workdir / f"{role}-{index}.decoded"
                size, sha256 = decode_base64_file(raw, path, self.limits.max_bytes)
                declared = None
        rendered: list[thumbnails.Preview] = []

        def render(image: Image.Image) -> None:
            # A failure here is met again, and logged, when the thumbnailer tries the file.
            with contextlib.suppress(Exception):
                rendered.append(thumbnails.render_image(image))

        info = verify_image(
            path,
            max_pixels=self.limits.max_pixels,
            declared_content_type=declared,
            max_bytes=self.limits.max_bytes,
            on_decoded=render if preview else None,
        )
        return Staged(
            role,
            index,
            describe_source(url),
            path,
            sha256,
            size,
            info,
            rendered[0] if rendered else None,
            # Outputs only: an input's credentials are its author's, not the result's.
            provenance.read_credentials(path, info.content_type) if role == "output" else None,
        )


class Archiver:
    """The `archive` task."""

    def __init__(
        self,
        db: Database,
        store: ArchiveStore,
        outputs: ImageStager,
        inputs: ImageStager,
        *,
        nsfw_policy: NsfwPolicy,
        signer: Signer,
        confirm: Confirm | None = None,
        workdir: Path | None = None,
        thumbnailer: thumbnails.Thumbnailer | None = None,
    ) -> None:
        self.db = db
        self.signer = signer
        self.store = store
        self.outputs = outputs
        self.inputs = inputs
        self.nsfw_policy = nsfw_policy
        self.confirm = confirm
        self.workdir = workdir
        self.thumbnailer = thumbnailer

    def __call__(self, task: ClaimedTask) -> None:
        assert task.job_id is not None
        self.archive(task.job_id)

    def archive(self, job_id: str) -> None:
        started = time.monotonic()
        with self.db.transaction() as session:
            job = records.get_job(session, job_id)
            if job.status is not JobStatus.ARCHIVING:
                return  # archived already, or failed meanwhile
            answer = results.latest_success(session, job)
            recorded = _assets(session, job_id)
            done = {(a.role, a.index) for a in recorded}
            found = layout.recorded(job, [a.key for a in recorded])
            older = found is None and predates_projects(session, job)
            session.expunge_all()
        if answer is None:
            raise PermanentError("no successful provider answer to archive", code="no_result")
        result = results.result_from_json(answer.result)
        if answer.source == "webhook" and self.confirm is not None:
            result = self._confirmed(job, result)
        if not result.outputs:
            raise PermanentError(
                "the provider reported success but listed no images", code="no_outputs"
            )
        where = found or job_layout(self.store, job, older=older)
        nsfw = bool(job.nsfw) or bool(result.nsfw)
        # Derived previews for the dashboard, never of content flagged NSFW, so the gallery
        # is safe to open anywhere.
        thumbnailing = self.thumbnailer is not None and not nsfw

        with tempfile.TemporaryDirectory(prefix="genvault-", dir=self.workdir) as tmp:
            workdir = Path(tmp)
            staged = in_parallel(
                lambda i, url: self.outputs.stage(
                    "output", i, url, workdir, base64_file=result.base64_files, preview=thumbnailing
                ),
                [(i, url) for i, url in enumerate(result.outputs) if ("output", i) not in done],
            )
            # Each output goes up with its thumbnail right behind it, so one's preview travels
            # while the next original does; their rows are then recorded in one transaction.
            rows = in_parallel(
                lambda item: self._store_output(job, where, item, nsfw=nsfw),
                [(x,) for x in staged],
            )
            with self.db.transaction() as session:
                session.add_all([row for pair in rows for row in pair])
            previewed = sum(len(pair) == 2 for pair in rows)
            if self.thumbnailer is not None and thumbnailing and previewed < len(result.outputs):
                # What is still without a thumbnail: outputs stored by an earlier run, images
                # too large to have been decoded whole while they were verified, or a preview
                # that failed. (Every output stored now with its thumbnail: nothing to read.)
                originals = {s.index: s.path for s in staged}
                self.thumbnailer.make(
                    job, where, iter_asset_rows(self.db, job_id), originals, workdir
                )
            for item in staged:
                item.path.unlink(missing_ok=True)
            input_errors = self._archive_inputs(job, where, done, workdir, nsfw=nsfw)

        self._finish(job_id, where, answer, input_errors, nsfw, time.monotonic() - started)

    def _archive_inputs(
        self,
        job: Job,
        where: layout.JobLayout,
        done: set[tuple[str, int]],
        workdir: Path,
        *,
        nsfw: bool,
    ) -> list[dict[str, Any]]:
        """Store each input that can be had; list the others with their reason."""
        failures: list[dict[str, Any]] = []
        for i, url in enumerate(input_urls(job)):
            if ("input", i) in done:
                continue
            if not isinstance(url, str):  # archived at acceptance, yet no asset row
                failures.append(
                    {
                        "index": i,
                        "key": url.get("archived_as"),
                        "stored": False,
                        "source_url": summary_text(url),
                        "reason": "inline_input_missing",
                        "error": "the inline input archived at acceptance has no record",
                    }
                )
                continue
            try:
                item = self.inputs.stage("input", i, url, workdir, base64_file=False)
            except TaskError as exc:
                # Transient ones too: the outputs are stored, and an input that times out
                # now (or 404s, its link expired) is not worth holding the job for.
                failures.append(input_failure(i, url, exc))
                log.info(
                    "input not archived",
                    extra={"job_id": job.id, "index": i, "reason": failures[-1]["reason"]},
                )
                continue
            self._store(job, where, item, nsfw=nsfw)  # a store outage still retries the task
            item.path.unlink(missing_ok=True)
        return failures

    def _confirmed(self, job: Job, claimed: ProviderResult) -> ProviderResult:
        """Ask the provider itself what the webhook claimed (GENVAULT_CONFIRM_CALLBACKS).

        ModelsLab signs nothing; with this on, only URLs the provider's own fetch endpoint
        returns are downloaded, so a forged callback with a valid token gains nothing.
        """
        assert self.confirm is not None
        answer = self.confirm(job)
        if answer.status is ResultStatus.PROCESSING:
            raise TransientError("the provider does not confirm the result yet")
        if answer.status is not ResultStatus.SUCCESS or not answer.outputs:
            raise PermanentError(
                "the provider's fetch endpoint does not confirm the webhook's result",
                code="unconfirmed_callback",
            )
        if set(claimed.outputs) - set(answer.outputs):
            log.warning("webhook outputs differ from the provider's", extra={"job_id": job.id})
        return answer

    def _store_output(
        self, job: Job, where: layout.JobLayout, item: Staged, *, nsfw: bool
    ) -> list[Asset]:
        """Store a verified output and then its thumbnail, if it has one; their asset rows."""
        rows = [stored(self.store, job, item, self._key(where, item, nsfw=nsfw))]
        if item.preview is not None and self.thumbnailer is not None:
            with thumbnails.logged_failure(job, item.index):
                rows.append(self.thumbnailer.store_preview(job, where, rows[0], item.preview))
        return rows

    def _store(self, job: Job, where: layout.JobLayout, item: Staged, *, nsfw: bool) -> None:
        keep(self.db, self.store, job, item, self._key(where, item, nsfw=nsfw))

    def _key(self, where: layout.JobLayout, item: Staged, *, nsfw: bool) -> str | None:
        """Where ``item`` is stored; None when the NSFW policy records it without storing."""
        key: str | None
        if item.role == "input":
            key = where.input_key(item.index, item.info.extension)
        elif nsfw and self.nsfw_policy is NsfwPolicy.SKIP:
            key = None
        else:
            key = where.output_key(
                item.index,
                item.info.extension,
                quarantine=nsfw and self.nsfw_policy is NsfwPolicy.QUARANTINE,
            )
        return key

    def _finish(
        self,
        job_id: str,
        where: layout.JobLayout,
        answer: Any,
        input_errors: Sequence[Mapping[str, Any]],
        nsfw: bool,
        seconds: float,
    ) -> None:
        with self.db.transaction() as session:
            job = records.get_job(session, job_id)
            assets = _assets(session, job_id)
            session.expunge_all()
        job.nsfw = nsfw
        now = utcnow()
        key = where.manifest_key()
        body = manifest.dumps(
            manifest.build(
                job,
                answer,
                [a for a in assets if a.role == "output"],
                [a for a in assets if a.role == "input"],
                input_errors=input_errors,
                expected_size=expected_size(job.endpoint, job.params),
                archived_at=now,
                archive_seconds=seconds,
                nsfw_policy=self.nsfw_policy.value,
                derived=thumbnails.manifest_entries(assets),
                object_id=where.object_id if where.ocfl else None,
            )
        )
        # Outside any transaction: a slow store must not hold database locks.
        body = self._write_manifest(job, key, body)
        # The manifest's own time (an earlier attempt's, if its manifest stands): the
        # object's version and the job's row say it, so a second attempt writes the same
        # inventory and a database rebuilt from the archive (reindex) says the same.
        when = archived_at(body, now)
        if where.ocfl:
            commit_object(self.store, where, when)
        with self.db.transaction() as session:
            job = records.get_job(session, job_id, for_update=True)
            job.nsfw = nsfw
            if records.advance(job, JobStatus.ARCHIVED):
                job.manifest_key = key
                job.manifest_sha256 = hashlib.sha256(body).hexdigest()
                job.archived_at = job.updated_at = when
                _summarise_inline_outputs(session, job_id)
        log.info("archived", extra={"job_id": job_id, "assets": len(assets)})

    def _write_manifest(self, job: Job, key: str, body: bytes) -> bytes:
        return write_signed_manifest(self.store, self.signer, job, key, body)


def write_signed_manifest(
    store: ArchiveStore, signer: Signer, job: Job, key: str, body: bytes
) -> bytes:
    """Write the manifest, then its signature; return the bytes the store holds."""
    metadata = {"job-id": job.id, "track-id": job.track_id}
    try:
        store.put_bytes(key, body, content_type="application/json", metadata=metadata)
        ocfl_objects.remember(store, key, [body])
    except ObjectExists:
        # An earlier run wrote it and died before recording it: it stands, and it is
        # what gets signed and recorded (its timings differ from ours).
        with store.open(key) as stream:
            body = stream.read()
    # Ed25519 is deterministic: a signature written by an earlier run is the same bytes.
    with contextlib.suppress(ObjectExists):
        signature = signer.sign(body)
        store.put_bytes(
            signature_key(key), signature, content_type="application/json", metadata=metadata
        )
        ocfl_objects.remember(store, signature_key(key), [signature])
    return body


def archived_at(manifest_body: bytes, default: datetime) -> datetime:
    """When the manifest says the job was archived."""
    try:
        return datetime.fromisoformat(json.loads(manifest_body)["timings"]["archived_at"])
    except (ValueError, KeyError, TypeError):
        return default


def commit_object(store: ArchiveStore, where: layout.JobLayout, created: datetime) -> None:
    """Make the job's stored files an OCFL object: its inventory, written last.

    ``created``, the version's timestamp, is the manifest's ``archived_at``: the manifest
    that stands in the store (an earlier attempt's, after a crash) gives the same inventory.
    """
    assert where.object_root is not None
    assert where.storage_root is not None
    ocfl_objects.declare_storage_root(store, where.storage_root)
    ocfl_objects.commit(
        store,
        where.object_root,
        where.object_id,
        created=created.isoformat(),
        message=f"genvault archived job {where.job_id}",
    )


def _summarise_inline_outputs(session: Any, job_id: str) -> None:
    """Once archived, inline outputs (AI/ML API b64_json) leave the callbacks table.

    Until then the provider's answer is the only copy of those images, so it keeps them;
    afterwards a summary stands in (the archive task skips outputs it has stored).
    """
    for callback in session.execute(select(Callback).where(Callback.job_id == job_id)).scalars():
        outputs = callback.result.get("outputs") or []
        if any(isinstance(o, str) and o[:5].lower() == "data:" for o in outputs):
            callback.result = {
                **callback.result,
                "outputs": [describe_source(o) if isinstance(o, str) else o for o in outputs],
            }


def input_failure(index: int, url: str, exc: TaskError) -> dict[str, Any]:
    """How the manifest lists an input that was not archived: where from, and why not."""
    if exc.reason:
        reason = exc.reason
    elif isinstance(exc, DownloadRefused):
        reason = f"refused:{exc.rule}"
    elif isinstance(exc, PermanentError):
        reason = exc.code
    else:
        reason = "unavailable"
    return {
        "index": index,
        "key": None,
        "stored": False,
        "source_url": describe_source(url),
        "reason": reason,
        "error": exc.message,
    }


def keep(db: Database, store: ArchiveStore, job: Job, item: Staged, key: str | None) -> None:
    """Store a verified image under ``key`` (None: record only) and record it as an asset."""
    row = stored(store, job, item, key)
    with db.transaction() as session:
        session.add(row)


def stored(store: ArchiveStore, job: Job, item: Staged, key: str | None) -> Asset:
    """Store a verified image under ``key`` (None: record only); its asset row, to record."""
    if key is not None:
        put_staged(store, job, item, key)
    return asset_row(job.id, item, key)


def put_staged(store: ArchiveStore, job: Job, item: Staged, key: str) -> None:
    """Store a verified image under ``key``, write-once, and count it."""
    put_verified(
        store,
        key,
        item.path,
        item.sha256,
        item.info.content_type,
        {
            "job-id": job.id,
            "track-id": job.track_id,
            "sha256": item.sha256,
            "role": item.role,
            "index": str(item.index),
        },
    )
    metrics.ASSETS_ARCHIVED.labels(item.role).inc()
    metrics.ARCHIVED_BYTES.inc(item.size)


def asset_row(job_id: str, item: Staged, key: str | None) -> Asset:
    """The database row of a verified image (``key`` None: recorded, not stored)."""
    return Asset(
        job_id=job_id,
        role=item.role,
        index=item.index,
        key=key,
        source_url=item.source_url,
        sha256=item.sha256,
        size=item.size,
        content_type=item.info.content_type,
        width=item.info.width,
        height=item.info.height,
        content_credentials=item.credentials,
    )


def put_verified(
    store: ArchiveStore,
    key: str,
    path: Path,
    sha256: str,
    content_type: str,
    metadata: Mapping[str, str],
) -> None:
    """Write once; an object already there with the same SHA-256 is ours from an earlier run."""
    try:
        store.put_file(key, path, sha256=sha256, content_type=content_type, metadata=metadata)
        ocfl_objects.remember_file(store, key, path)  # for its object's inventory
    except ObjectExists:
        existing = store.head(key).sha256
        if existing != sha256:
            raise PermanentError(
                f"{key} is already archived with different content (sha256 {existing});"
                " it was not overwritten",
                code="archive_conflict",
            ) from None


def _assets(session: Any, job_id: str) -> list[Asset]:
    return list(
        session.execute(
            select(Asset).where(Asset.job_id == job_id).order_by(Asset.role, Asset.index)
        ).scalars()
    )


def iter_asset_rows(db: Database, job_id: str) -> Iterator[Asset]:
    with db.transaction() as session:
        yield from _assets(session, job_id)


# Which layout a job's objects go in (layout.py has both). The rule, for every path that
# writes (archive, re-archive after an operator's retry, inputs archived at submit):
#
# 1. Something of the job is recorded (its manifest key, or any asset row with a key: an
#    output, a thumbnail, an input stored at acceptance): its layout, whichever that is. A
#    job archived by an earlier release keeps its root-layout keys for ever, so a replayed
#    or retried archive finds its own objects (write-once, same bytes) and the audit and
#    the dashboard read what the rows say.
# 2. Nothing recorded, and the job is newer than its project row (every job created since
#    projects; `default` was created by migration 0007): under its project.
# 3. Nothing recorded, and the job is older than that (created before the upgrade, archived
#    after it): a worker of the earlier release may have stored objects and died before
#    recording them (rows are written after the objects). One listing of its root-layout
#    directories says: anything there, and it stays in the root layout, completing what was
#    begun (no orphans, nothing stored twice); nothing, and it goes under its project.


def predates_projects(session: Any, job: Job) -> bool:
    """Whether ``job`` is older than its project's row (created before the upgrade)."""
    project = session.get(Project, job.project)
    return project is None or job.created_at < project.created_at


def job_layout(store: ArchiveStore, job: Job, *, older: bool) -> layout.JobLayout:
    """Rules 2 and 3 above, for a job with nothing recorded (``older``: predates_projects)."""
    if older:
        root = layout.JobLayout.of(job, root=True)
        if any(next(iter(store.iter_keys(p + "/")), None) for p in root.prefixes()):
            return root
    return layout.JobLayout.of(job)


def resolve_layout(db: Database, store: ArchiveStore, job: Job) -> layout.JobLayout:
    """Where ``job``'s objects go: the rule above, reading what is recorded."""
    with db.transaction() as session:
        keys = list(session.execute(select(Asset.key).where(Asset.job_id == job.id)).scalars())
        found = layout.recorded(job, keys)
        older = found is None and predates_projects(session, job)
    return found or job_layout(store, job, older=older)
