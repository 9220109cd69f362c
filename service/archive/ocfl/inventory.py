"""An object's inventory: what its one version holds, by SHA-512, with SHA-256 fixity.

genvault writes each object once, as version ``v1``; content paths are ``v1/content/{path}``
and the logical paths in the version's state are ``{path}``. The ``fixity`` block carries the
SHA-256 of each file: the digest S3 checks on upload (``ChecksumSHA256``) and the one
genvault's manifest and database record, so one inventory ties the three together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

INVENTORY = "inventory.json"
SIDECAR = "inventory.json.sha512"
TYPE = "https://ocfl.io/1.1/spec/#inventory"
VERSION = "v1"
CONTENT = f"{VERSION}/content"
USER = {"name": "genvault", "address": "https://github.com/genvault/genvault"}


class InventoryError(ValueError):
    """An inventory that is not one genvault can trust: unreadable, or its sidecar disagrees."""


@dataclass(frozen=True)
class ContentFile:
    """One file of the version: its logical path (under ``v1/content/``) and its digests."""

    path: str
    sha512: str
    sha256: str
    size: int


def build(object_id: str, created: str, files: Iterable[ContentFile], message: str) -> bytes:
    """The inventory's bytes (stable: the same files and ``created`` give the same bytes)."""
    manifest: dict[str, list[str]] = {}
    state: dict[str, list[str]] = {}
    fixity: dict[str, list[str]] = {}
    for item in sorted(files, key=lambda f: f.path):
        # Identical files share a digest: OCFL lists every path under it.
        manifest.setdefault(item.sha512, []).append(f"{CONTENT}/{item.path}")
        state.setdefault(item.sha512, []).append(item.path)
        fixity.setdefault(item.sha256, []).append(f"{CONTENT}/{item.path}")
    body = {
        "id": object_id,
        "type": TYPE,
        "digestAlgorithm": "sha512",
        "head": VERSION,
        "manifest": manifest,
        "versions": {
            VERSION: {"created": created, "message": message, "state": state, "user": USER}
        },
        "fixity": {"sha256": fixity},
    }
    return json.dumps(body, indent=2, sort_keys=True).encode()


def sidecar(body: bytes) -> bytes:
    """The digest file beside an inventory: ``{sha512} inventory.json``."""
    return f"{hashlib.sha512(body).hexdigest()} {INVENTORY}\n".encode()


@dataclass(frozen=True)
class Inventory:
    """A parsed inventory whose sidecar matched."""

    object_id: str
    created: str
    # Content path (``v1/content/…``) → its SHA-512 and, from the fixity block, its SHA-256.
    sha512: Mapping[str, str]
    sha256: Mapping[str, str]


def parse(body: bytes, digest_file: bytes) -> Inventory:
    """Check ``body`` against its sidecar and read what genvault needs of it."""
    expected = digest_file.decode(errors="replace").split()
    if len(expected) != 2 or expected[1] != INVENTORY:
        raise InventoryError("the inventory's sidecar is not '{sha512} inventory.json'")
    if hashlib.sha512(body).hexdigest() != expected[0].lower():
        raise InventoryError("the inventory does not match its sidecar's SHA-512")
    try:
        data: Any = json.loads(body)
        versions = data["versions"][data["head"]]
        sha512 = _by_path(data["manifest"])
        sha256 = _by_path(data.get("fixity", {}).get("sha256", {}))
        return Inventory(str(data["id"]), str(versions["created"]), sha512, sha256)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InventoryError(f"the inventory is not a readable OCFL inventory ({exc})") from None


def _by_path(block: Mapping[str, list[str]]) -> dict[str, str]:
    return {path: digest.lower() for digest, paths in block.items() for path in paths}
