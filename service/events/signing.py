"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>``.

Secrets are ``whsec_`` + base64 of 32 random bytes, as the official libraries expect. This is
the sender's side; ``verify`` exists for ``genvault listen``, and tests check both against
the official ``standardwebhooks`` package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

PREFIX = "whsec_"
TOLERANCE_SECONDS = 300  # the official libraries' window


class SignatureError(Exception):
    """The webhook's signature does not verify."""


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(PREFIX)
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secrets_: Iterable[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers; one ``v1,`` entry per active secret."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(signature(s, msg_id, ts, body) for s in secrets_),
    }


def verify(secret: str, body: bytes, given: Mapping[str, str], now: float | None = None) -> None:
    """Raise SignatureError unless one ``v1,`` entry matches and the timestamp is recent."""
    lowered = {k.lower(): v for k, v in given.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp", "")
    sigs = lowered.get("webhook-signature", "")
    if not (msg_id and stamp.isdigit() and sigs):
        raise SignatureError("missing or malformed webhook headers")
    if abs((time.time() if now is None else now) - int(stamp)) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp outside the tolerance")
    expected = signature(secret, msg_id, int(stamp), body)
    if not any(hmac.compare_digest(expected, s) for s in sigs.split(" ")):
        raise SignatureError("no matching signature")
