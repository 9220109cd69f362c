"""Where things live in the archive (the layout of the public contract).

Keys are relative to the archive root (``GENVAULT_ARCHIVE_URL``). Two layouts, both read,
audited and written to (a job keeps the one it started in) for good:

```
projects/{slug}/{YYYY}/{MM}/{DD}/{job_id}/…              every job since projects
projects/{slug}/quarantine/{YYYY}/{MM}/{DD}/{job_id}/…   its NSFW outputs (policy quarantine)
{YYYY}/{MM}/{DD}/{job_id}/…                              jobs of earlier releases ("root")
quarantine/{YYYY}/{MM}/{DD}/{job_id}/…
```

Under a job's directory: ``{index}.{ext}`` (outputs), ``inputs/{index}.{ext}``,
``thumbs/{index}.webp``, ``manifest.json`` and ``manifest.json.sig``.

Everything of a project, its quarantine included, is under ``projects/{slug}/``, so one
bucket-policy statement (or one IAM prefix condition) fences a project off; a slug never
changes, so neither does the prefix. ``projects/`` cannot be mistaken for a root-layout year
or for the root ``quarantine/``, so the two layouts never share a key.

That prefix is what the next archive layout (OCFL) makes each project's storage root. Its
entries (``0=ocfl_1.1``, ``ocfl_layout.json``, ``extensions/``, and the 3-hex-character
directories of the 0003 hash-and-id n-tuple layout) collide with neither the 4-digit years
nor ``quarantine/`` used here, so dated jobs can be upgraded into objects in place.

Which layout a job uses is decided once, by what already exists of it (``recorded``): a job
archived, or partly archived, by an earlier release keeps its root-layout keys through a
retry, a re-archive and an audit; a job of which nothing was written yet goes under its
project (pipeline.job_layout adds the store's word for jobs older than projects).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

PROJECTS = "projects"
QUARANTINE = "quarantine"
MANIFEST = "manifest.json"

# A key somewhere in a job's directory, in either layout: (projects/{slug}/)?(quarantine/)?
# {YYYY}/{MM}/{DD}/{job_id}/…
_JOB_KEY = re.compile(
    rf"^(?:{PROJECTS}/(?P<project>[^/]+)/)?(?P<quarantine>{QUARANTINE}/)?"
    r"(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{2})/(?P<job>[^/]+)/"
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
    """Where one job's objects live. ``project`` None: the root layout of earlier releases."""

    job_id: str
    day: date
    project: str | None

    @classmethod
    def of(cls, job: _Job, *, root: bool = False) -> JobLayout:
        """The job under its project; with ``root``, where an earlier release put it."""
        return cls(job.id, job.created_at.date(), None if root else job.project)

    @property
    def root(self) -> bool:
        """Whether this is the root layout of releases before projects."""
        return self.project is None

    def prefix(self, *, quarantine: bool = False) -> str:
        """The job's directory (no trailing slash), or its quarantine directory."""
        base = f"{self.day:%Y/%m/%d}/{self.job_id}"
        if quarantine:
            base = f"{QUARANTINE}/{base}"
        return base if self.project is None else f"{project_prefix(self.project)}/{base}"

    def prefixes(self) -> tuple[str, str]:
        """Every directory the job may have objects in: its own and its quarantine."""
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
    found = _JOB_KEY.match(key)
    if found is None:
        return None
    try:
        day = date(int(found["year"]), int(found["month"]), int(found["day"]))
    except ValueError:
        return None
    return JobLayout(found["job"], day, found["project"])


def is_quarantined(key: str) -> bool:
    """Whether ``key`` is in a quarantine directory (NSFW outputs), in either layout."""
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
    """The recorded layout of ``job``, else the layout of a new job: under its project."""
    return recorded(job, keys) or JobLayout.of(job)
