"""Input images given inline as data: URIs: archived when the job is accepted.

Where the bulk lives until archived: nowhere but the store. ``accept`` runs inside
``POST /v1/jobs`` (and `genvault submit`), before the job row is written: each data: input is
decoded, verified and stored as the job's input object, and the job's params keep only a
summary (media type, size, SHA-256, ``archived_as`` key). Why at acceptance rather than in
the submit task: the jobs table (read by every list query, copied into logs and manifests)
never holds megabytes of base64; a bad inline image is a 422 to the client who sent it, not a
failed job later; and nothing has to be staged in the database in between. The price is one
store write inside the request, which the request was already paying for by uploading it.

At submit time (``__call__``) every summary becomes a link to the stored object the provider
can fetch. Jobs accepted before this change may still carry data: URIs in their params: those
are archived then, as they always were.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service.archive import layout
from service.archive.pipeline import (
    ImageStager,
    asset_row,
    input_urls,
    keep,
    put_verified,
    resolve_layout,
)
from service.db.models import Asset, Job
from service.db.session import Database
from service.errors import FieldError, InvalidRequest, PermanentError
from service.providers.endpoints import get_endpoint
from service.security.redaction import is_summary, summarise_inline
from service.storage.base import ArchiveStore

Replace = Callable[[int, str, Any], Any]


def map_inputs(endpoint: str, params: Mapping[str, Any], replace: Replace) -> dict[str, Any]:
    """A copy of ``params`` with each input (by position, as input_urls counts) replaced."""
    out = dict(params)
    position = 0
    for name in get_endpoint(endpoint).input_fields:
        value = out.get(name)
        if isinstance(value, list):
            items = []
            for item in value:
                if _is_input(item):
                    items.append(replace(position, name, item))
                    position += 1
                else:
                    items.append(item)
            out[name] = items
        elif _is_input(value):
            out[name] = replace(position, name, value)
            position += 1
    return out


def _is_input(value: Any) -> bool:
    return (isinstance(value, str) and bool(value)) or is_summary(value)


def _is_data_uri(value: Any) -> bool:
    return isinstance(value, str) and value[:5].lower() == "data:"


class InlineInputs:
    """Archives inline inputs at acceptance; turns them into links at submit."""

    def __init__(
        self, db: Database, store: ArchiveStore, stager: ImageStager, *, url_expires: int
    ) -> None:
        self.db = db
        self.store = store
        self.stager = stager
        self.url_expires = url_expires

    def accept(
        self,
        job_id: str,
        created_at: datetime,
        endpoint: str,
        params: Mapping[str, Any],
        project: str,
    ) -> tuple[dict[str, Any], list[Asset]]:
        """Store every data: input now; return the params with summaries and the asset rows.

        A job being accepted is new: its inputs go under its project (layout.py).
        """
        where = layout.JobLayout.object(job_id, project)
        assets: list[Asset] = []
        with tempfile.TemporaryDirectory(prefix="genvault-in-") as tmp:

            def archive(position: int, name: str, value: Any) -> Any:
                if not _is_data_uri(value):
                    return value
                try:
                    item = self.stager.stage("input", position, value, Path(tmp), base64_file=False)
                except PermanentError as exc:
                    raise InvalidRequest([FieldError(f"params.{name}", exc.message)]) from None
                key = where.input_key(position, item.info.extension)
                put_verified(
                    self.store,
                    key,
                    item.path,
                    item.sha256,
                    item.info.content_type,
                    {"job-id": job_id, "sha256": item.sha256, "role": "input"},
                )
                item.path.unlink(missing_ok=True)
                assets.append(asset_row(job_id, item, key))
                summary = summarise_inline(value, archived_as=key)
                summary["media_type"] = item.info.content_type
                return summary

            clean = map_inputs(endpoint, params, archive)
        return clean, assets

    def __call__(self, job: Job) -> dict[str, Any]:
        """The params the provider gets: archived inline inputs as links to their objects."""
        legacy = [i for i, url in enumerate(input_urls(job)) if _is_data_uri(url)]
        keys = self._archive(job, legacy) if legacy else {}

        def link(position: int, _name: str, value: Any) -> Any:
            if is_summary(value) and value.get("archived_as"):
                return self.store.url(str(value["archived_as"]), self.url_expires)
            if position in keys:
                return self.store.url(keys[position], self.url_expires)
            return value

        return map_inputs(job.endpoint, job.params, link)

    def _archive(self, job: Job, positions: list[int]) -> dict[int, str]:
        """Jobs accepted before inline inputs were archived at acceptance: archive now."""
        urls = input_urls(job)
        with self.db.transaction() as session:
            done = {
                a.index: a.key
                for a in session.execute(
                    select(Asset).where(Asset.job_id == job.id, Asset.role == "input")
                ).scalars()
                if a.key
            }
        keys: dict[int, str] = {}
        where: layout.JobLayout | None = None
        with tempfile.TemporaryDirectory(prefix="genvault-in-") as tmp:
            for i in positions:
                if i in done:
                    keys[i] = done[i]
                    continue
                url = urls[i]
                assert isinstance(url, str)
                item = self.stager.stage("input", i, url, Path(tmp), base64_file=False)
                # Jobs this old may hold objects of an earlier release: pipeline's rule.
                where = where or resolve_layout(self.db, self.store, job)
                key = where.input_key(i, item.info.extension)
                keep(self.db, self.store, job, item, key)
                keys[i] = key
        return keys
