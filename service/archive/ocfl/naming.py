"""Where a job's OCFL object lives: its id and the 0003 storage layout's path for it."""

from __future__ import annotations

import hashlib
import re

# The object's id: a URN naming the job, so an object found in any copy of the archive says
# whose it is without the database.
OBJECT_ID_PREFIX = "urn:genvault:job:"

STORAGE_ROOT_DECLARATION = "0=ocfl_1.1"
STORAGE_ROOT_DECLARATION_BODY = b"ocfl_1.1\n"
OBJECT_DECLARATION = "0=ocfl_object_1.1"
OBJECT_DECLARATION_BODY = b"ocfl_object_1.1\n"
LAYOUT_FILE = "ocfl_layout.json"

# The registered storage layout extension (https://ocfl.github.io/extensions/), with its
# defaults spelled out: sha256 of the id, three tuples of three hex characters (4,096
# directories per level), then the percent-encoded id as the object's directory.
LAYOUT_EXTENSION = "0003-hash-and-id-n-tuple-storage-layout"
LAYOUT_CONFIG = {
    "extensionName": LAYOUT_EXTENSION,
    "digestAlgorithm": "sha256",
    "tupleSize": 3,
    "numberOfTuples": 3,
}
LAYOUT_CONFIG_KEY = f"extensions/{LAYOUT_EXTENSION}/config.json"
LAYOUT_DESCRIPTION = {
    "extension": LAYOUT_EXTENSION,
    "description": (
        "genvault: one OCFL object per archived job, id urn:genvault:job:{job_id}; "
        "hashed n-tuple directories (sha256, 3x3) then the percent-encoded object id"
    ),
}

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_MAX_ENCODED = 100


def object_id(job_id: str) -> str:
    return OBJECT_ID_PREFIX + job_id


def _percent(char: re.Match[str]) -> str:
    return "".join(f"%{b:02x}" for b in char[0].encode())


def _encapsulation(object_id: str, digest: str) -> str:
    # Every character but [A-Za-z0-9_-] as its UTF-8 bytes, %xx lower case.
    encoded = _UNSAFE.sub(_percent, object_id)
    return f"{encoded[:_MAX_ENCODED]}-{digest}" if len(encoded) > _MAX_ENCODED else encoded


def object_path(object_id: str) -> str:
    """The object's root relative to its storage root, per the 0003 extension."""
    digest = hashlib.sha256(object_id.encode()).hexdigest()
    tuples = [digest[i : i + 3] for i in range(0, 9, 3)]
    return "/".join([*tuples, _encapsulation(object_id, digest)])
