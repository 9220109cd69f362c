"""Signing in to the dashboard, and who the signed-in visitor is on every page.

Two ways in, each ending in a signed, expiring session cookie:

- an API key (or a deprecated GENVAULT_API_TOKENS token) pasted into /ui/login, when no
  OpenID provider is configured. The cookie holds the key's id (or a keyed fingerprint of
  the token), never the secret; the key is looked up on every page, so revoking it, or
  removing the token from the settings, signs its sessions out at once.
- OpenID Connect (service.ui.oidc): the cookie holds the person's grants, computed from their
  groups at sign-in, and an expiry.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from flask import Flask, Request, g, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from service.access import credentials
from service.access.principal import Principal
from service.access.scopes import Scope
from service.config import Settings
from service.db.session import Database
from service.security.tokens import derive_key

SESSION_KEY = "who"
_ALL = "*"  # how a grant on every project is written in the cookie


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building a signer for a request that carries
    no session cookie (every webhook and API call): that was about 25 us a webhook."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def configure(app: Flask, settings: Settings) -> None:
    """Flask's session and CSRF settings for the dashboard."""
    app.session_interface = CookieSessions()
    app.secret_key = derive_key(settings.secret, "ui-session")
    lifetime = timedelta(seconds=settings.ui_session_seconds)
    app.config.update(
        SESSION_COOKIE_NAME="genvault_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        SESSION_COOKIE_PATH="/ui",
        PERMANENT_SESSION_LIFETIME=lifetime,
        # A CSRF token lives as long as the session that holds it.
        WTF_CSRF_TIME_LIMIT=settings.ui_session_seconds,
    )


def _start(settings: Settings, who: dict[str, Any]) -> None:
    session.clear()  # a fresh session on every sign-in: no fixation
    session.permanent = True
    session[SESSION_KEY] = {**who, "exp": int(time.time()) + settings.ui_session_seconds}


def sign_in_with_credential(settings: Settings, db: Database, credential: str) -> Principal | None:
    """The token form: an API key with its scopes, or a legacy token."""
    given = credential.strip()
    tokens = tuple(t.get_secret_value() for t in settings.api_tokens)
    principal = credentials.authenticate(db, settings.secret, tokens, given) if given else None
    session.clear()
    if principal is None:
        return None
    if principal.kind == "key":
        _start(settings, {"kind": "key", "id": principal.id})
    else:
        fingerprint = credentials.token_fingerprint(settings.secret, given)
        _start(settings, {"kind": "token", "fp": fingerprint, "id": principal.id})
    return principal


def sign_in_person(settings: Settings, principal: Principal) -> None:
    """After the identity provider vouched for them (service.ui.oidc)."""
    grants = {_ALL if p is None else p: sorted(s) for p, s in principal.grants.items()}
    _start(
        settings,
        {"kind": "user", "id": principal.id, "label": principal.label, "grants": grants},
    )


def _token(settings: Settings, fingerprint: object) -> Principal | None:
    for number, token in enumerate(settings.api_tokens, start=1):
        raw = token.get_secret_value()
        if credentials.token_fingerprint(settings.secret, raw) == fingerprint:
            return credentials.legacy_principal(number)
    return None


def _person(who: dict[str, Any]) -> Principal:
    grants = {
        (None if p == _ALL else str(p)): frozenset(Scope(s) for s in scopes)
        for p, scopes in dict(who.get("grants") or {}).items()
    }
    return Principal("user", str(who.get("id")), str(who.get("label", "")), grants)


def _load(settings: Settings, db: Database) -> Principal | None:
    who = session.get(SESSION_KEY)
    if not isinstance(who, dict) or not isinstance(who.get("exp"), int) or who["exp"] < time.time():
        return None
    kind = who.get("kind")
    if settings.oidc_enabled and kind != "user":
        # The token form is off with OIDC: a key session from before it was turned on ends.
        return None
    if kind == "key":
        return credentials.key_still_valid(db, str(who.get("id")))
    if kind == "token":
        return _token(settings, who.get("fp"))
    # A person's session is only as good as the sign-in that made it: none without OIDC.
    return _person(who) if kind == "user" and settings.oidc_enabled else None


def current(settings: Settings, db: Database) -> Principal | None:
    """The signed-in visitor of this request (looked up once per request)."""
    if "ui_principal" not in g:
        g.ui_principal = _load(settings, db) if session.get(SESSION_KEY) else None
    found = g.ui_principal
    return found if isinstance(found, Principal) else None


def sign_out() -> None:
    session.clear()
