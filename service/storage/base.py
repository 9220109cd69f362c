"""The ArchiveStore port: a write-once object store keyed like S3."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from service.errors import GenvaultError, TransientError


class StorageError(GenvaultError):
    """The archive store failed."""


class ObjectExists(StorageError):
    """An object already exists under this key; archived objects are never overwritten."""


class ObjectMissing(StorageError, FileNotFoundError):
    """No object under this key."""


class StorageUnavailable(StorageError, TransientError):
    """The archive store could not be reached; try again."""


@dataclass(frozen=True)
class Retention:
    """What keeps an object from being deleted now (S3 Object Lock).

    ``until``: the latest RetainUntilDate among its versions still retained (None when only
    a legal hold keeps it, which has no date).
    """

    key: str
    until: datetime | None
    mode: str | None = None  # COMPLIANCE or GOVERNANCE
    legal_hold: bool = False


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows of one object. ``sha256`` is lowercase hex."""

    key: str
    size: int
    sha256: str | None
    content_type: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


class ArchiveStore(Protocol):
    """Write-once object storage. Keys are ``/``-separated and never start with ``/``."""

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        """Store the file at ``path`` under ``key`` with its SHA-256 (hex) checked by the store.

        Raises ObjectExists when ``key`` is already taken (nothing is overwritten).
        """

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Store small data (a manifest) under ``key``, write-once like ``put_file``."""

    def head(self, key: str) -> ObjectInfo:
        """Describe the object; raises ObjectMissing."""

    def open(self, key: str) -> BinaryIO:
        """A streaming reader of the object's bytes; raises ObjectMissing. Close it."""

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, in lexicographic order."""

    def versioned_keys(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` of which anything is stored, older versions included.

        What erasure must remove: on a versioned bucket, also keys whose current version is a
        delete marker. Where there are no versions it is ``iter_keys``.
        """

    def retention(self, key: str) -> Retention | None:
        """What keeps any version of the object from deletion now; None when nothing does."""

    def delete(self, key: str) -> None:
        """Remove the object for good: on a versioned bucket every version and delete marker.

        The one way anything leaves the archive (erasure). A missing key is no error, so an
        interrupted erasure can simply run again. Ask ``retention`` first: a retained version
        makes the store refuse (StorageError) with the others already gone.
        """

    def url(self, key: str, expires_in: int) -> str:
        """A URL from which anyone holding it can GET the object for ``expires_in`` seconds."""

    def uri(self, key: str) -> str:
        """Where the object lives, in full: ``s3://BUCKET/PREFIX/KEY`` or ``file:///ABS/PATH``.

        ``key`` stays relative to the archive root (manifests stay relocatable); the URI is
        what a user hands to their own S3 client or file tools.
        """

    def check(self) -> None:
        """Raise StorageError unless the store is reachable and writable (readiness)."""
