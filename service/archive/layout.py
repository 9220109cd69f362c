"""Where things live in the archive (the layout of the public contract).

Keys are relative to the archive root (``GENVAULT_ARCHIVE_URL``). Every job since OCFL is
an OCFL 1.1 object in its project's storage root (``projects/{slug}/``, see ocfl/); jobs of
earlier releases stay where they were written, read, audited and completed in place:

```
projects/{slug}/0=ocfl_1.1, ocfl_layout.json, extensions/…   the storage root
projects/{slug}/{aaa}/{bbb}/{ccc}/urn%3agenvault%3ajob%3a{job_id}/
    0=ocfl_object_1.1, inventory.json, inventory.json.sha512    the object (committed by
    v1/inventory.json, v1/inventory.json.sha512                  the root inventory, last)
    v1/content/…                                                 the job's files
projects/{slug}/{YYYY}/{MM}/{DD}/{job_id}/…              jobs of the release with projects
projects/{slug}/quarantine/{YYYY}/{MM}/{DD}/{job_id}/…   their NSFW outputs
{YYYY}/{MM}/{DD}/{job_id}/…                              jobs of earlier releases ("root")
quarantine/{YYYY}/{MM}/{DD}/{job_id}/…
```

Under a job's directory (an object's ``v1/content/``, or a dated directory):
``{index}.{ext}`` (outputs), ``inputs/{index}.{ext}``, ``thumbs/{index}.webp``,
``manifest.json`` and ``manifest.json.sig``. An object keeps its NSFW outputs in
``v1/content/quarantine/``: an OCFL object holds all of its files, and nothing outside the
objects may sit in a storage root's hierarchy. ``genvault archive upgrade`` moves dated jobs
into objects.

Everything of a project is under ``projects/{slug}/``, so one bucket-policy statement (or one
IAM prefix condition) fences a project off; a slug never changes, so neither does the prefix.
The storage root's entries (``0=ocfl_1.1``, ``ocfl_layout.json``, ``extensions/``, and the
3-hex-character directories of the 0003 layout) collide with neither the 4-digit years nor
``quarantine/`` of the dated layout, so the layouts never share a key.

Which layout a job uses is decided once, by what already exists of it (``recorded``): a job
archived, or partly archived, by an earlier release keeps its keys through a retry, a
re-archive and an audit; a job of which nothing was written yet becomes an object
(pipeline.job_layout adds the store's word for jobs older than projects).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Protocol

from service.archive.ocfl import inventory, naming

PROJECTS = "projects"
QUARANTINE = "quarantine"
MANIFEST = "manifest.json"

# A key somewhere in a job's directory, in either layout: (projects/{slug}/)?(quarantine/)?
# {YYYY}/{MM}/{DD}/{job_id}/…
_JOB_KEY = re.compile(
    rf"^(?:{PROJECTS}/(?P<project>[^/]+)/)?(?P<quarantine>{QUARANTINE}/)?"
    r"(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{2})/(?P<job>[^/]+)/"
)
# A key in an OCFL object: projects/{slug}/{aaa}/{bbb}/{ccc}/{encoded object id}/…
_OBJECT_KEY = re.compile(
    rf"^{PROJECTS}/(?P<project>[^/]+)/(?P<path>[0-9a-f]{{3}}/[0-9a-f]{{3}}/[0-9a-f]{{3}}/"
    r"urn%3agenvault%3ajob%3a(?P<job>[A-Za-z0-9_-]+))/(?P<rest>.*)$"
)


class _Job(Protocol):
    """What a layout needs of a job (a Job row)."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def project(self) -> str: ...
    @property
    def manifest_key(self) -> str | None: ...


def project_prefix(project: str) -> str:
    """Everything of ``project`` is under this prefix (no trailing slash)."""
    return f"{PROJECTS}/{project}"


@dataclass(frozen=True)
class JobLayout:
    """Where one job's files live.

    ``day`` None: an OCFL object in its project's storage root (every new job). Otherwise a
    dated directory of an earlier release: under its project, or (``project`` None) at the
    archive root.
    """

    job_id: str
    day: date | None
    project: str | None

    @classmethod
    def of(cls, job: _Job, *, root: bool = False) -> JobLayout:
        """The job's OCFL object; with ``root``, where a release before projects put it."""
        if root:
            return cls(job.id, job.created_at.date(), None)
        return cls.object(job.id, job.project)

    @classmethod
    def object(cls, job_id: str, project: str) -> JobLayout:
        return cls(job_id, None, project)

    @classmethod
    def dated(cls, job: _Job) -> JobLayout:
        """Where the release that introduced projects put a job (before OCFL)."""
        return cls(job.id, job.created_at.date(), job.project)

    @property
    def root(self) -> bool:
        """Whether this is the root layout of releases before projects."""
        return self.project is None

    @property
    def ocfl(self) -> bool:
        return self.day is None

    @property
    def object_id(self) -> str:
        return naming.object_id(self.job_id)

    @cached_property  # a digest and an encoding, read several times per job shown
    def object_root(self) -> str | None:
        """The OCFL object's root directory; None for a dated layout."""
        if self.day is not None or self.project is None:
            return None
        return f"{project_prefix(self.project)}/{naming.object_path(self.object_id)}"

    @property
    def storage_root(self) -> str | None:
        return project_prefix(self.project) if self.ocfl and self.project else None

    def prefix(self, *, quarantine: bool = False) -> str:
        """The job's directory (no trailing slash), or its quarantine directory."""
        if self.object_root is not None:
            base = f"{self.object_root}/{inventory.CONTENT}"
            return f"{base}/{QUARANTINE}" if quarantine else base
        base = f"{self.day:%Y/%m/%d}/{self.job_id}"
        if quarantine:
            base = f"{QUARANTINE}/{base}"
        return base if self.project is None else f"{project_prefix(self.project)}/{base}"

    def prefixes(self) -> tuple[str, ...]:
        """Every directory the job may have files in: its object's root, or (dated) its
        directory and its quarantine directory."""
        if self.object_root is not None:
            return (self.object_root,)
        return self.prefix(), self.prefix(quarantine=True)

    def output_key(self, index: int, ext: str, *, quarantine: bool = False) -> str:
        return f"{self.prefix(quarantine=quarantine)}/{index}.{ext}"

    def input_key(self, index: int, ext: str) -> str:
        return f"{self.prefix()}/inputs/{index}.{ext}"

    def thumb_key(self, index: int) -> str:
        """A derived preview of output ``index``, beside the outputs (listed as ``derived``)."""
        return f"{self.prefix()}/thumbs/{index}.webp"

    def manifest_key(self) -> str:
        return f"{self.prefix()}/{MANIFEST}"


def parse(key: str) -> JobLayout | None:
    """The layout of the job whose directory holds ``key``; None for a key outside any."""
    obj = _OBJECT_KEY.match(key)
    if obj is not None:
        where = JobLayout.object(obj["job"], obj["project"])
        # Only the path the 0003 layout gives this id: anything else is no object of ours.
        root = where.object_root
        return where if root is not None and key.startswith(f"{root}/") else None
    found = _JOB_KEY.match(key)
    if found is None:
        return None
    try:
        day = date(int(found["year"]), int(found["month"]), int(found["day"]))
    except ValueError:
        return None
    return JobLayout(found["job"], day, found["project"])


def is_quarantined(key: str) -> bool:
    """Whether ``key`` is in a quarantine directory (NSFW outputs), in any layout."""
    obj = _OBJECT_KEY.match(key)
    if obj is not None:
        return obj["rest"].startswith(f"{inventory.CONTENT}/{QUARANTINE}/")
    found = _JOB_KEY.match(key)
    return found is not None and found["quarantine"] is not None


def recorded(job: _Job, keys: Iterable[str | None]) -> JobLayout | None:
    """The layout the job's recorded keys are in; None when nothing of it is recorded.

    Its manifest key first (an archived job), then any of ``keys`` (its asset rows: outputs,
    inputs stored at acceptance, thumbnails). Every object of a job is written under one
    layout, so the first key that names this job decides.
    """
    for key in (job.manifest_key, *keys):
        found = parse(key) if key else None
        if found is not None and found.job_id == job.id:
            return found
    return None


def for_job(job: _Job, keys: Iterable[str | None] = ()) -> JobLayout:
    """The recorded layout of ``job``, else the layout of a new job: its OCFL object."""
    return recorded(job, keys) or JobLayout.of(job)
