"""Signing in to the dashboard: an API token once, then a signed, expiring session cookie.

The cookie never holds the token: it holds a keyed fingerprint of it, checked against the
configured tokens on every request, so removing a token from GENVAULT_API_TOKENS signs out
its sessions too.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

from flask import Flask, Request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from service.config import Settings

SESSION_KEY = "who"


def derive_key(secret: bytes, label: str) -> bytes:
    """A key for one purpose, derived from GENVAULT_SECRET_KEY (never the raw secret)."""
    return hmac.new(secret, f"genvault/{label}/v1".encode(), hashlib.sha256).digest()


def fingerprint(secret: bytes, token: str) -> str:
    return hmac.new(derive_key(secret, "ui-token-id"), token.encode(), hashlib.sha256).hexdigest()


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


def sign_in(settings: Settings, token: str) -> bool:
    given = token.strip()
    matched = False
    # Compare with every token so the time taken does not tell which one nearly matched.
    for candidate in settings.api_tokens:
        matched |= hmac.compare_digest(candidate.get_secret_value().encode(), given.encode())
    session.clear()  # a fresh session on every sign-in: no fixation
    if not matched:
        return False
    session.permanent = True
    session[SESSION_KEY] = fingerprint(settings.secret, given)
    return True


def signed_in(settings: Settings) -> bool:
    who = session.get(SESSION_KEY)
    if not isinstance(who, str):
        return False
    valid = {fingerprint(settings.secret, t.get_secret_value()) for t in settings.api_tokens}
    return who in valid


def sign_out() -> None:
    session.clear()
