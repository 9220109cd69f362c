"""Signed tokens: webhook URL tokens and expiring file links.

ModelsLab signs nothing, so the secret in the webhook URL is what stands between the
internet and the archive: HMAC-SHA256(secret, provider + track_id), URL-safe base64,
compared in constant time.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac


def derive_key(secret: bytes, label: str) -> bytes:
    """A key for one purpose, derived from GENVAULT_SECRET_KEY (never the raw secret)."""
    return hmac.new(secret, f"genvault/{label}/v1".encode(), hashlib.sha256).digest()


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    """An HMAC with the key already absorbed, copied for each message.

    Setting the key up is most of an HMAC of a short message, and hmac.digest() does it on
    every call, OpenSSL's MAC fetched by name included: py-spy on bench/webhook_cpu.py's
    requests put the token check at 7% of a webhook's CPU that way, 4.5% copying this.
    The secret is kept here as the settings keep it: in this process's memory.
    """
    return hmac.new(secret, digestmod=hashlib.sha256)


def _mac(secret: bytes, message: str) -> str:
    mac = _keyed(secret).copy()
    mac.update(message.encode())
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def webhook_token(secret: bytes, provider: str, track_id: str) -> str:
    return _mac(secret, f"{provider}{track_id}")


def verify_webhook_token(secret: bytes, provider: str, track_id: str, token: str | None) -> bool:
    if not token:
        return False
    expected = webhook_token(secret, provider, track_id)
    # Tokens are issued unpadded; a client that computed one with padding is still right.
    return hmac.compare_digest(expected.encode(), token.rstrip("=").encode())


def file_signature(secret: bytes, key: str, expires_at: int) -> str:
    # A distinct prefix keeps a file signature from ever being valid as a webhook token.
    return _mac(secret, f"file:{expires_at}:{key}")


def verify_file_signature(
    secret: bytes, key: str, expires_at: int, signature: str | None, now: float
) -> bool:
    if not signature or expires_at < now:
        return False
    return hmac.compare_digest(file_signature(secret, key, expires_at).encode(), signature.encode())
