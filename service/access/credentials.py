"""From a bearer credential to a Principal: an API key, or a deprecated legacy token."""

from __future__ import annotations

import hashlib
import hmac

from service.access import store
from service.access.principal import Principal
from service.access.scopes import ALL_SCOPES
from service.db.session import Database
from service.db.types import utcnow
from service.security.tokens import derive_key


def legacy_principal(number: int) -> Principal:
    return Principal("token", f"#{number}", "GENVAULT_API_TOKENS", {None: ALL_SCOPES})


def authenticate(
    db: Database, server_secret: bytes, legacy_tokens: tuple[str, ...], credential: str
) -> Principal | None:
    if credential.startswith("gvk_"):
        return store.authenticate_key(db, server_secret, credential)
    number = store.legacy_token_index(legacy_tokens, credential) if legacy_tokens else None
    return legacy_principal(number) if number is not None else None


def token_fingerprint(server_secret: bytes, token: str) -> str:
    """What a dashboard session keeps of a legacy token (never the token itself)."""
    key = derive_key(server_secret, "ui-token-id")
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def key_still_valid(db: Database, key_id: str) -> Principal | None:
    """A signed-in key's principal while it is neither revoked nor expired (checked per page)."""
    row = store.find_key(db, key_id)
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    return store.key_principal(row)
