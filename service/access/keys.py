"""API keys: ``gvk_{id}_{secret}{checksum}``, stored only as a keyed hash.

- ``id``: 16 base62 characters, public (it is the row's primary key and shows in lists and
  the audit log).
- ``secret``: 43 base62 characters from ``secrets``: 43 x log2(62) = 256.03 bits.
- ``checksum``: CRC32 of everything before it, as 6 base62 characters (the scheme GitHub's
  tokens use): a secret scanner can tell a real key from a look-alike without a database,
  and a mistyped key is refused without one.

The hash is HMAC-SHA256 under a key derived from GENVAULT_SECRET_KEY. For 256 random bits a
slow password hash buys nothing, and a keyed hash means a stolen database alone does not even
allow an offline check of a guessed key.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass
from hashlib import sha256
from typing import Final

from service.security.tokens import derive_key

PREFIX: Final = "gvk_"
ALPHABET: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
ID_LENGTH: Final = 16
SECRET_LENGTH: Final = 43
CHECKSUM_LENGTH: Final = 6

# What a secret scanner (GitHub push protection, gitleaks, trufflehog) should look for.
SCANNER_PATTERN: Final = r"\bgvk_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}\b"
_SHAPE = re.compile(r"gvk_([0-9A-Za-z]{16})_([0-9A-Za-z]{43})([0-9A-Za-z]{6})")


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(ALPHABET[rest])
    return "".join(reversed(digits))


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


@dataclass(frozen=True)
class NewKey:
    id: str
    key: str  # shown once, never stored


def generate() -> NewKey:
    key_id = _random(ID_LENGTH)
    body = f"{PREFIX}{key_id}_{_random(SECRET_LENGTH)}"
    return NewKey(key_id, body + checksum(body))


def parse(key: str) -> str | None:
    """The key's id if it has the shape and a right checksum, else None."""
    match = _SHAPE.fullmatch(key)
    if match is None:
        return None
    body = key[:-CHECKSUM_LENGTH]
    if not hmac.compare_digest(checksum(body), match.group(3)):
        return None
    return match.group(1)


def hash_key(server_secret: bytes, key: str) -> str:
    return hmac.new(derive_key(server_secret, "api-key"), key.encode(), sha256).hexdigest()


def matches(server_secret: bytes, key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(server_secret, key), stored_hash)
