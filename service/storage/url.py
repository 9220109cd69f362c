"""Parse ``GENVAULT_ARCHIVE_URL``: where the archive lives (the wiring builds the store)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from service.errors import ConfigError

SETTING = "GENVAULT_ARCHIVE_URL"
EXPECTED = "file://PATH or s3://BUCKET[/PREFIX]"

# S3's rules for bucket names (3-63 characters, lowercase letters, digits, dots and hyphens,
# starting and ending with a letter or digit); stricter naming is left to S3.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class ArchiveLocation:
    """Where the archive lives: ``path`` for ``file``, ``bucket`` and ``prefix`` for ``s3``.

    ``path`` is absolute; ``prefix`` has no leading or trailing ``/`` (``""`` for none).
    """

    scheme: Literal["file", "s3"]
    path: Path | None = None
    bucket: str | None = None
    prefix: str = ""


def parse_archive_url(url: str) -> ArchiveLocation:
    """``file://var/archive`` (relative to the cwd), ``file:///abs``, ``s3://bucket/prefix``.

    Raises ConfigError with one line. The URL itself is not echoed: a mistyped one could
    carry credentials (``s3://KEY:SECRET@bucket``).
    """
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("file", "s3"):
        shown = f"scheme {scheme!r}" if sep else "no scheme"
        raise ConfigError(f"{SETTING} must be {EXPECTED}; got {shown}")
    if scheme == "file":
        return _file_location(rest)
    return _s3_location(rest)


def _file_location(rest: str) -> ArchiveLocation:
    path = unquote(rest)
    if not path or "\0" in path:
        raise ConfigError(f"{SETTING}: file:// needs a path, like file://var/archive")
    # file:///abs has an absolute path; file://var/archive is relative to the cwd.
    return ArchiveLocation("file", path=Path(path).absolute())


def _s3_location(rest: str) -> ArchiveLocation:
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        raise ConfigError(
            f"{SETTING}: s3:// takes a bucket name only; credentials and endpoint come from "
            "AWS_* variables"
        )
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"{SETTING}: {bucket!r} is not a valid S3 bucket name")
    prefix = prefix.rstrip("/")
    if prefix and any(not part or part in (".", "..") for part in prefix.split("/")):
        raise ConfigError(f"{SETTING}: prefix {prefix!r} has an empty or dot segment")
    return ArchiveLocation("s3", bucket=bucket, prefix=prefix)
