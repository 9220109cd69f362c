"""Input images given inline as data: URIs: archived at submit, handed to the provider as URLs."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select

from service.archive import layout
from service.archive.pipeline import ImageStager, input_urls, keep
from service.db.models import Asset, Job
from service.db.session import Database
from service.providers.endpoints import get_endpoint
from service.storage.base import ArchiveStore


class InlineInputs:
    """PrepareInputs for the submit task: every data: input becomes a stored object's URL."""

    def __init__(
        self, db: Database, store: ArchiveStore, stager: ImageStager, *, url_expires: int
    ) -> None:
        self.db = db
        self.store = store
        self.stager = stager
        self.url_expires = url_expires

    def __call__(self, job: Job) -> dict[str, Any]:
        params = dict(job.params)
        inline = [i for i, url in enumerate(input_urls(job)) if url.startswith("data:")]
        if not inline:
            return params
        keys = self._archive(job, inline)
        # Walk the fields in the same order as input_urls() so index i means the same input.
        position = 0
        for name in get_endpoint(job.endpoint).input_fields:
            value = params.get(name)
            if isinstance(value, str) and value:
                params[name] = self._url(keys.get(position), value)
                position += 1
            elif isinstance(value, list):
                replaced = []
                for item in value:
                    if isinstance(item, str) and item:
                        replaced.append(self._url(keys.get(position), item))
                        position += 1
                    else:
                        replaced.append(item)
                params[name] = replaced
        return params

    def _url(self, key: str | None, original: str) -> str:
        return self.store.url(key, self.url_expires) if key else original

    def _archive(self, job: Job, positions: list[int]) -> dict[int, str]:
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
        with tempfile.TemporaryDirectory(prefix="genvault-in-") as tmp:
            for i in positions:
                if i in done:
                    keys[i] = done[i]
                    continue
                item = self.stager.stage("input", i, urls[i], Path(tmp), base64_file=False)
                key = layout.input_key(job.created_at, job.id, i, item.info.extension)
                keep(self.db, self.store, job, item, key)
                keys[i] = key
        return keys
