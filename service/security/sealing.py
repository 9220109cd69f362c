"""Secrets at rest: endpoint credentials sealed with a key derived from the server secret.

AES-256-GCM with a key from HKDF-SHA256 over GENVAULT_SECRET_KEY (its own ``info``, so it
is never the key that signs tokens or file links). A sealed value is ``v1.`` + base64 of a
12-byte random nonce and the ciphertext; the endpoint id is the associated data, so a
sealed blob copied onto another endpoint does not open. Nothing here logs.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PREFIX = "v1."
_INFO = b"genvault endpoint credentials v1"


class SealError(Exception):
    """A sealed value does not open with this server secret (rotated key, or tampering)."""


def _key(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def seal(secret: bytes, values: Mapping[str, str], context: str) -> str:
    """Encrypt a small mapping of secrets (credentials, URLs with userinfo)."""
    nonce = os.urandom(12)
    plain = json.dumps(dict(values), separators=(",", ":")).encode()
    sealed = AESGCM(_key(secret)).encrypt(nonce, plain, context.encode())
    return _PREFIX + base64.b64encode(nonce + sealed).decode()


def unseal(secret: bytes, value: str, context: str) -> dict[str, str]:
    if not value.startswith(_PREFIX):
        raise SealError("not a sealed value")
    try:
        raw = base64.b64decode(value.removeprefix(_PREFIX), validate=True)
        plain = AESGCM(_key(secret)).decrypt(raw[:12], raw[12:], context.encode())
    except (InvalidTag, ValueError):
        raise SealError("the sealed credentials do not open with this secret key") from None
    loaded = json.loads(plain)
    return {str(k): str(v) for k, v in loaded.items()}
