"""Ed25519 signatures over manifests, so an archive can be verified from the bucket alone.

The signature is detached: ``manifest.json.sig`` beside ``manifest.json`` holds a small JSON
document with the algorithm, the signing key's id and the base64 signature over the exact
bytes of ``manifest.json``. Signing the stored bytes (not a re-serialised form) means there is
no canonicalisation for a verifier to get wrong: read both objects, verify, done.

The key is GENVAULT_SIGNING_KEY (the base64 of a 32-byte Ed25519 seed) or, unset, derived
from GENVAULT_SECRET_KEY with HKDF-SHA256, so no deployment needs a new setting. A rotated
secret key therefore rotates the signing key: keep the old public key to verify old archives.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.config import Settings, signing_seed
from service.errors import ConfigError

ALGORITHM = "Ed25519"
SIGNATURE_SUFFIX = ".sig"
# Fixed domain separation: the same secret key also keys webhook tokens and file links.
_HKDF_INFO = b"genvault manifest signing key v1"


def signature_key(manifest_key: str) -> str:
    """Where the signature of ``manifest_key`` lives."""
    return manifest_key + SIGNATURE_SUFFIX


def key_id(public: bytes) -> str:
    """A short, stable name for a public key (the first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(public).hexdigest()[:16]


class BadSignature(Exception):
    """The signature is missing, malformed, by another key, or does not match the bytes."""


@dataclass(frozen=True)
class Verifier:
    """Checks manifest signatures with a public key (all that --bucket-only needs)."""

    public: bytes

    @classmethod
    def from_base64(cls, text: str) -> Verifier:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ConfigError("the public key must be the base64 of 32 bytes (Ed25519)")
        return cls(raw)

    @property
    def public_base64(self) -> str:
        return base64.b64encode(self.public).decode()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def describe(self) -> dict[str, str]:
        """The public key as /v1/signing-key and `genvault signing-key` give it."""
        return {"algorithm": ALGORITHM, "public_key": self.public_base64, "key_id": self.key_id}

    def verify(self, data: bytes, signature_document: bytes) -> None:
        """Raise BadSignature unless ``signature_document`` signs ``data`` with this key."""
        try:
            doc: Any = json.loads(signature_document)
            signature = base64.b64decode(str(doc["signature"]), validate=True)
            algorithm = doc["algorithm"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise BadSignature("the signature file is malformed") from None
        if algorithm != ALGORITHM:
            raise BadSignature(f"unexpected algorithm {algorithm!r}")
        if doc.get("key_id") not in (None, self.key_id):
            raise BadSignature(f"signed by another key ({doc.get('key_id')})")
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, data)
        except InvalidSignature:
            raise BadSignature("the signature does not match the manifest") from None


class Signer:
    """Signs manifests; built from the settings in wiring. ``verifier`` is its public half."""

    def __init__(self, seed: bytes) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.verifier = Verifier(public)

    def __repr__(self) -> str:  # the seed must never print
        return f"Signer(key_id={self.verifier.key_id!r})"

    def sign(self, data: bytes) -> bytes:
        """The signature document (JSON) for ``data``, written as ``manifest.json.sig``."""
        signature = base64.b64encode(self._private.sign(data)).decode()
        doc = {"algorithm": ALGORITHM, "key_id": self.verifier.key_id, "signature": signature}
        return json.dumps(doc, sort_keys=True).encode() + b"\n"


def signer_from_settings(settings: Settings) -> Signer:
    """GENVAULT_SIGNING_KEY when set, else HKDF-SHA256 over GENVAULT_SECRET_KEY."""
    if settings.signing_key is not None:
        return Signer(signing_seed(settings.signing_key))
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        settings.secret
    )
    return Signer(seed)
