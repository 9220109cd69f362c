"""An OCFL object around a job's content: written once, committed by its root inventory.

The archive task stores the job's files under ``{root}/v1/content/`` (each write-once, with
its SHA-256 checked by the store) and then calls ``commit``, which writes the object's
declaration, the version's inventory and, last, the root ``inventory.json`` and its sidecar.
Until that sidecar exists the object is incomplete: ``read`` answers None, an OCFL
validator refuses it (no inventory), and the next attempt completes it with the same bytes.

The inventory's SHA-512s come from the bytes the archive task sent (``remember``), which the
store checked against their SHA-256 as it wrote them (S3's ``ChecksumSHA256``, the file
store's own check), so they are the stored bytes' too. A file this process did not write
(an earlier attempt's, or another worker's) is read back from the store instead. Reading
every file back cost the archive 2.5x its throughput over a 20 ms round trip
(bench/archive_throughput.py --rtt-ms 20).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


# What this process wrote, by location (store.uri): (sha512, sha256, size). Bounded: a job's
# files are committed seconds after they are written; older entries are never needed.
_MEMO_SIZE = 4096
_memo: OrderedDict[str, tuple[str, str, int]] = OrderedDict()
_memo_lock = threading.Lock()


def remember(store: ArchiveStore, key: str, chunks: Iterable[bytes]) -> None:
    """Note the digests of what was just written under ``key`` (its bytes, again)."""
    sha512, sha256, size = hashlib.sha512(), hashlib.sha256(), 0
    for chunk in chunks:
        sha512.update(chunk)
        sha256.update(chunk)
        size += len(chunk)
    with _memo_lock:
        _memo[store.uri(key)] = (sha512.hexdigest(), sha256.hexdigest(), size)
        while len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)


def remember_file(store: ArchiveStore, key: str, path: Path) -> None:
    with path.open("rb") as src:
        remember(store, key, iter(lambda: src.read(CHUNK), b""))


def _remembered(store: ArchiveStore, key: str, path: str) -> inventory.ContentFile | None:
    with _memo_lock:
        found = _memo.get(store.uri(key))
    return inventory.ContentFile(path, *found) if found is not None else None


def read_content(store: ArchiveStore, key: str, path: str) -> inventory.ContentFile:
    """One stored file's digests, read back from the store."""
    sha512, sha256, size = hashlib.sha512(), hashlib.sha256(), 0
    with store.open(key) as stream:
        while chunk := stream.read(CHUNK):
            sha512.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return inventory.ContentFile(path, sha512.hexdigest(), sha256.hexdigest(), size)


def content(
    store: ArchiveStore, root: str, *, read_back: bool = False
) -> list[inventory.ContentFile]:
    """Every file under the object's content directory, with its digests: those this process
    wrote from memory, the others (all of them with ``read_back``) read from the store."""
    prefix = f"{root}/{inventory.CONTENT}/"
    found: list[inventory.ContentFile] = []
    unread: list[str] = []
    for key in store.iter_keys(prefix):
        known = None if read_back else _remembered(store, key, key.removeprefix(prefix))
        if known is not None:
            found.append(known)
        else:
            unread.append(key)
    found += in_parallel(
        lambda key: read_content(store, key, key.removeprefix(prefix)), [(k,) for k in unread]
    )
    return found


def commit(store: ArchiveStore, root: str, object_id: str, *, created: str, message: str) -> bytes:
    """Write the object's structure around its stored content; the root inventory's bytes.

    ``created`` (the version's timestamp) comes from the job's manifest, so a second attempt
    builds the same inventory as the first and write-once holds.
    """
    files = content(store, root)
    body = inventory.build(object_id, created, files, message)
    # Three round trips rather than five: the declaration beside the version's inventory
    # (OCFL's SHOULD), its digest file beside the root's inventory, and last the root's
    # digest file, the commit marker: every file is there before it.
    with ThreadPoolExecutor(2, "ocfl-commit") as pool:
        declared = pool.submit(
            _put_same, store, f"{root}/{naming.OBJECT_DECLARATION}", naming.OBJECT_DECLARATION_BODY
        )
        body = _put_inventory(store, f"{root}/{inventory.VERSION}/{inventory.INVENTORY}", body)
        version_digest = pool.submit(
            _put_same,
            store,
            f"{root}/{inventory.VERSION}/{inventory.SIDECAR}",
            inventory.sidecar(body),
        )
        body = _put_inventory(store, f"{root}/{inventory.INVENTORY}", body)
        declared.result()
        version_digest.result()
    _put_same(store, f"{root}/{inventory.SIDECAR}", inventory.sidecar(body))
    return body


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


def _put_inventory(store: ArchiveStore, key: str, body: bytes) -> bytes:
    """Write an inventory once; the bytes the store holds under ``key``.

    An inventory already there from an earlier attempt stands if it lists the same content
    (it is what the digest file must match); one listing other content is a conflict.
    """
    try:
        store.put_bytes(key, body, content_type="application/json", metadata={})
    except ObjectExists:
        existing = _read(store, key)
        if existing != body and _listing(existing) != _listing(body):
            raise PermanentError(
                f"{key} is already archived and lists other content; it was not overwritten",
                code="archive_conflict",
            ) from None
        return existing
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
