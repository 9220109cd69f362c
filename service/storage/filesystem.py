"""An ArchiveStore on a local directory, laid out like the S3 bucket.

Write-once is enforced by ``os.link``: a fully written, fsynced and verified temp file is
hard-linked to its key, and the link fails if the key exists, so exactly one of any number
of concurrent writers wins. The link is the commit point; the sidecar holding the content
type and metadata is written after it, by the winner only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from service.errors import ConfigError
from service.security.tokens import file_signature
from service.storage.base import (
    ObjectExists,
    ObjectInfo,
    ObjectMissing,
    Retention,
    StorageError,
    StorageUnavailable,
)

CHUNK = 1024 * 1024


def validate_key(key: str) -> list[str]:
    """Split ``key`` into its segments, refusing anything that could leave the root.

    Segments starting with ``.`` are refused too: that name space holds the store's own
    temp files and sidecars, so no key can collide with them.
    """
    if not key or key.startswith("/") or "\\" in key or "\0" in key:
        raise StorageError(f"invalid archive key {key!r}")
    parts = key.split("/")
    if any(not part or part.startswith(".") for part in parts):
        raise StorageError(f"invalid archive key {key!r}")
    return parts


def _legacy_sidecar(path: Path) -> Path:
    """Where releases before OCFL kept an object's labels: beside it, as a dotfile."""
    return path.with_name(f".{path.name}.meta.json")


# The store's own files live in two dot-directories at its root, outside every key (no key
# segment starts with "."): labels (sha256, content type, metadata) and temp files. An OCFL
# object directory must hold only the object's files, so nothing of the store sits beside
# them.
_META = ".meta"
_TMP = ".tmp"


def _prune_empty(directory: Path, stop: Path) -> None:
    """Remove ``directory`` and its parents below ``stop`` while they are empty."""
    while directory != stop and directory.is_relative_to(stop):
        try:
            directory.rmdir()
        except OSError:
            return  # not empty (or already gone): the rest of the tree is kept
        directory = directory.parent


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemStore:
    """Write-once archive under ``root``; ``url()`` signs links served by the web app."""

    def __init__(self, root: Path, *, url_base: str, secret: bytes | None) -> None:
        # secret None: a store that reads and writes but signs no links (`genvault audit`).
        self.root = root
        self._url_base = url_base.rstrip("/")
        self._secret = secret

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key))

    def _sidecar(self, key: str) -> Path:
        """The object's labels, under the root's ``.meta/`` directory."""
        parts = validate_key(key)
        return self.root.joinpath(_META, *parts[:-1], f"{parts[-1]}.json")

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        """Copy ``path`` in under ``key``; ObjectExists if taken, StorageError on a bad digest."""
        # Opened here so a missing source surfaces as the caller's own FileNotFoundError.
        with path.open("rb") as src:
            self._write(key, iter(lambda: src.read(CHUNK), b""), sha256, content_type, metadata)

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Store ``data`` under ``key``, write-once."""
        digest = hashlib.sha256(data).hexdigest()
        self._write(key, [data], digest, content_type, metadata)

    def _write(
        self,
        key: str,
        chunks: Iterable[bytes],
        sha256: str,
        content_type: str,
        metadata: Mapping[str, str],
    ) -> None:
        target = self._path(key)
        if target.exists():
            # Cheap early answer for a replay; the link below is what actually decides.
            raise ObjectExists(f"archive key {key!r} already exists")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            (self.root / _TMP).mkdir(exist_ok=True)
            tmp = self.root / _TMP / f"{secrets.token_hex(8)}.tmp"
            try:
                self._write_verified(tmp, chunks, sha256, key)
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise ObjectExists(f"archive key {key!r} already exists") from None
            finally:
                tmp.unlink(missing_ok=True)
            self._write_sidecar(self._sidecar(key), sha256, content_type, metadata)
            _fsync_dir(target.parent)
        except OSError as exc:
            raise StorageUnavailable(f"cannot write archive key {key!r}: {exc.strerror}") from exc

    @staticmethod
    def _write_verified(tmp: Path, chunks: Iterable[bytes], sha256: str, key: str) -> None:
        digest = hashlib.sha256()
        with tmp.open("xb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256.lower():
            raise StorageError(f"SHA-256 mismatch for archive key {key!r}; nothing stored")

    @staticmethod
    def _write_sidecar(
        sidecar: Path, sha256: str, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        tmp = sidecar.with_name(f"{sidecar.name}.{secrets.token_hex(8)}.tmp")
        # Metadata names are lower-cased and "sha256" is reserved, as on S3, so both
        # backends answer alike.
        names = {name.lower(): value for name, value in metadata.items()}
        names.pop("sha256", None)
        body = {"sha256": sha256.lower(), "content_type": content_type, "metadata": names}
        try:
            with tmp.open("x", encoding="utf-8") as out:
                json.dump(body, out, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, sidecar)
        finally:
            tmp.unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo:
        """Describe the object from its sidecar; raises ObjectMissing."""
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectMissing(f"no archive object {key!r}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ObjectMissing(f"no archive object {key!r}")  # a "directory" of other keys
        size = st.st_size
        try:
            meta = json.loads(self._sidecar(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            meta = None
        if meta is None:
            try:
                meta = json.loads(_legacy_sidecar(path).read_text(encoding="utf-8"))
            except FileNotFoundError:
                meta = None
        if meta is None:
            # A crash between the link and the sidecar: the bytes are committed and were
            # verified, so their digest is still knowable; only the labels are lost.
            with path.open("rb") as src:
                digest = hashlib.file_digest(src, "sha256").hexdigest()
            return ObjectInfo(key=key, size=size, sha256=digest, content_type=None)
        return ObjectInfo(
            key=key,
            size=size,
            sha256=meta["sha256"],
            content_type=meta["content_type"],
            metadata=meta["metadata"],
        )

    def open(self, key: str) -> BinaryIO:
        """The object's bytes; raises ObjectMissing."""
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectMissing(f"no archive object {key!r}") from None

    def iter_keys(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix`` (a string prefix, as on S3), in lexicographic order."""
        base, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*validate_key(base)) if base else self.root
        yield from (key for key in self._walk(start, base) if key.startswith(prefix))

    def _walk(self, directory: Path, dir_key: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a directory as "name/" keeps the walk in global key order: every key below
        # it starts with "name/", so it compares to its siblings exactly as that string does.
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            if entry.name.startswith("."):
                continue  # temp files, sidecars, probes
            key = f"{dir_key}/{entry.name}" if dir_key else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key)
            else:
                yield key

    def versioned_keys(self, prefix: str) -> Iterator[str]:
        """No versions here: the keys themselves."""
        return self.iter_keys(prefix)

    def retention(self, key: str) -> Retention | None:
        """A directory has no Object Lock: nothing keeps an object."""
        validate_key(key)
        return None

    def delete(self, key: str) -> None:
        """Unlink the object and its labels; then every directory this leaves empty.

        Empty directories go too: in an OCFL storage root an empty directory is an error, and
        one named after an erased job would keep its id in the tree. A writer creating a file
        in a directory just removed fails with StorageUnavailable and its task retries.
        """
        path = self._path(key)
        try:
            if path.is_dir():
                raise StorageError(f"archive key {key!r} is a directory of other keys")
            path.unlink(missing_ok=True)
            sidecar = self._sidecar(key)
            sidecar.unlink(missing_ok=True)
            _legacy_sidecar(path).unlink(missing_ok=True)
            if path.parent.exists():
                _fsync_dir(path.parent)
            _prune_empty(path.parent, self.root)
            _prune_empty(sidecar.parent, self.root / _META)
        except OSError as exc:
            raise StorageUnavailable(f"cannot delete archive key {key!r}: {exc.strerror}") from exc

    def url(self, key: str, expires_in: int) -> str:
        """A link to the web app's ``/files`` route, signed until ``now + expires_in``."""
        validate_key(key)
        if self._secret is None:
            raise ConfigError("GENVAULT_SECRET_KEY is required to sign file links")
        expires = int(time.time()) + max(1, expires_in)
        sig = file_signature(self._secret, key, expires)
        return f"{self._url_base}/files/{quote(key)}?expires={expires}&sig={sig}"

    def uri(self, key: str) -> str:
        # as_uri() percent-encodes what a URI cannot carry (spaces, '#', '?').
        return self._path(key).absolute().as_uri()

    def check(self) -> None:
        """Write and remove a probe file under the root."""
        probe = self.root / f".probe-{secrets.token_hex(8)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                probe.unlink(missing_ok=True)
            raise StorageUnavailable(f"archive directory not writable: {exc.strerror}") from exc
