"""An OCFL object around a job's content: written once, committed by its root inventory.

The archive task stores the job's files under ``{root}/v1/content/`` (each write-once, with
its SHA-256 checked by the store) and then calls ``commit``, which writes the object's
declaration, the version's inventory and, last, the root ``inventory.json`` and its sidecar.
Until that sidecar exists the object is incomplete: ``read`` answers None, an OCFL
validator refuses it (no inventory), and the next attempt completes it with the same bytes.

The inventory's digests are of what the store gives back, read here, not of what was sent:
the inventory attests to the stored bytes.
"""

from __future__ import annotations

import hashlib
import json
import threading

from service.archive.ocfl import inventory, naming
from service.archive.parallel import in_parallel
from service.errors import PermanentError
from service.storage.base import ArchiveStore, ObjectExists, ObjectMissing

CHUNK = 1024 * 1024

# Storage roots this process has declared, by location (store.uri of the prefix).
_declared: set[str] = set()
_declared_lock = threading.Lock()


def declare_storage_root(store: ArchiveStore, prefix: str) -> None:
    """Make ``prefix`` an OCFL 1.1 storage root (its declaration, layout and extension config).

    Write-once and idempotent; a process does it once per prefix.
    """
    marker = store.uri(prefix)
    with _declared_lock:
        if marker in _declared:
            return
    files = {
        naming.STORAGE_ROOT_DECLARATION: (naming.STORAGE_ROOT_DECLARATION_BODY, "text/plain"),
        naming.LAYOUT_FILE: (_json(naming.LAYOUT_DESCRIPTION), "application/json"),
        naming.LAYOUT_CONFIG_KEY: (_json(naming.LAYOUT_CONFIG), "application/json"),
    }
    for name, (body, content_type) in files.items():
        _put_same(store, f"{prefix}/{name}", body, content_type)
    with _declared_lock:
        _declared.add(marker)


def read_content(store: ArchiveStore, key: str, path: str) -> inventory.ContentFile:
    """One stored file's digests, read back from the store."""
    sha512, sha256, size = hashlib.sha512(), hashlib.sha256(), 0
    with store.open(key) as stream:
        while chunk := stream.read(CHUNK):
            sha512.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return inventory.ContentFile(path, sha512.hexdigest(), sha256.hexdigest(), size)


def content(store: ArchiveStore, root: str) -> list[inventory.ContentFile]:
    """Every file under the object's content directory, with its digests."""
    prefix = f"{root}/{inventory.CONTENT}/"
    keys = list(store.iter_keys(prefix))
    return in_parallel(
        lambda key: read_content(store, key, key.removeprefix(prefix)), [(k,) for k in keys]
    )


def commit(store: ArchiveStore, root: str, object_id: str, *, created: str, message: str) -> bytes:
    """Write the object's structure around its stored content; the root inventory's bytes.

    ``created`` (the version's timestamp) comes from the job's manifest, so a second attempt
    builds the same inventory as the first and write-once holds.
    """
    _put_same(store, f"{root}/{naming.OBJECT_DECLARATION}", naming.OBJECT_DECLARATION_BODY)
    files = content(store, root)
    body = inventory.build(object_id, created, files, message)
    # The version's copy first (OCFL's SHOULD), then the root's: the commit marker.
    body = _put_inventory(store, f"{root}/{inventory.VERSION}", body)
    return _put_inventory(store, root, body)


def read(store: ArchiveStore, root: str) -> inventory.Inventory | None:
    """The object's root inventory, checked against its sidecar; None: not committed.

    Raises InventoryError for an inventory that cannot be trusted.
    """
    try:
        body = _read(store, f"{root}/{inventory.INVENTORY}")
        digest = _read(store, f"{root}/{inventory.SIDECAR}")
    except ObjectMissing:
        return None
    return inventory.parse(body, digest)


def _put_inventory(store: ArchiveStore, directory: str, body: bytes) -> bytes:
    """Write an inventory and then its sidecar, once; the inventory's bytes as stored.

    An inventory already there from an earlier attempt stands if it lists the same content
    (it is what the sidecar must match); one listing other content is a conflict.
    """
    key = f"{directory}/{inventory.INVENTORY}"
    try:
        store.put_bytes(key, body, content_type="application/json", metadata={})
    except ObjectExists:
        existing = _read(store, key)
        if existing != body and _listing(existing) != _listing(body):
            raise PermanentError(
                f"{key} is already archived and lists other content; it was not overwritten",
                code="archive_conflict",
            ) from None
        body = existing
    _put_same(store, f"{directory}/{inventory.SIDECAR}", inventory.sidecar(body))
    return body


def _listing(body: bytes) -> object:
    try:
        return json.loads(body).get("manifest")
    except (ValueError, AttributeError):
        return None


def _put_same(store: ArchiveStore, key: str, body: bytes, content_type: str = "text/plain") -> None:
    """Write-once; the same bytes already there are ours from an earlier attempt."""
    try:
        store.put_bytes(key, body, content_type=content_type, metadata={})
    except ObjectExists:
        if _read(store, key) != body:
            raise PermanentError(
                f"{key} is already archived with other content; it was not overwritten",
                code="archive_conflict",
            ) from None


def _read(store: ArchiveStore, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def _json(value: object) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()
