"""People sign in to the dashboard through the company's identity provider (OpenID Connect).

The authorization code flow with PKCE (S256), through Authlib's Flask client: ``state``, the
PKCE verifier and the ``nonce`` wait in the (signed) session cookie between the two routes;
at the callback Authlib checks the state, exchanges the code, and verifies the ID token's
signature, ``iss``, ``aud``, ``exp`` and ``nonce``. The person's groups (GENVAULT_OIDC_GROUPS_CLAIM)
become grants through GENVAULT_OIDC_ROLE_MAP, recomputed at every sign-in; a person whose
groups map to no role is refused with a page that says so.

Registered by ``configure`` only when GENVAULT_OIDC_ISSUER is set: without it these routes
do not exist and the token form signs people in (service.ui.views.login).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import requests
from flask import Blueprint, Flask, Response, current_app, redirect, render_template, request
from flask import session as cookie
from joserfc.errors import JoseError
from werkzeug.wrappers.response import Response as BaseResponse

from service.access import rolemap
from service.access.principal import Principal
from service.api.context import container
from service.config import Settings
from service.errors import ConfigError
from service.ui import signins
from service.ui.session import sign_in_person

log = logging.getLogger(__name__)

bp = Blueprint("oidc", __name__, url_prefix="/ui/auth")
EXTENSION = "genvault.oidc"
ROLES = "genvault.oidc.roles"
SCOPE = "openid profile email groups"
HOW = "oidc"
NO_ROLE = (
    "Your groups map to no genvault role; ask an admin to add one of your groups to"
    " GENVAULT_OIDC_ROLE_MAP."
)
_NEXT = "oidc_next"  # where to go after the callback, kept in the session meanwhile
_PENDING = "_state_idp_"  # how Authlib names a started sign-in in the session
_KEEP_PENDING = 3


def configure(app: Flask, settings: Settings) -> None:
    """Register the identity provider's client and the sign-in routes on ``app``."""
    issuer, client_id, secret = (
        settings.oidc_issuer,
        settings.oidc_client_id,
        settings.oidc_client_secret,
    )
    if issuer is None or client_id is None or secret is None:
        return  # not configured (Settings refuses a partial configuration at start)
    try:
        # Parsed once, here at start: a wrong map stops the service with the entry named.
        app.extensions[ROLES] = rolemap.parse_role_map(settings.oidc_role_map)
    except ValueError as exc:
        raise ConfigError(f"GENVAULT_OIDC_ROLE_MAP: {exc}") from None
    # Imported only when sign-in is configured: authlib costs each process about 0.2 s of CPU
    # to import, paid at every worker's start.
    from authlib.integrations.flask_client import OAuth  # type: ignore[import-untyped]

    client = OAuth(app).register(
        "idp",
        client_id=client_id,
        client_secret=secret.get_secret_value(),
        # Read once, on the first sign-in: the service starts even while the provider is down.
        server_metadata_url=f"{issuer.rstrip('/')}/.well-known/openid-configuration",
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256", "default_timeout": 10},
    )
    app.extensions[EXTENSION] = client
    app.register_blueprint(bp)


def redirect_uri(settings: Settings) -> str:
    """Exactly what is registered at the provider: behind a proxy, the Host header is not."""
    return f"{settings.public_url}/ui/auth/callback"


def _client() -> Any:
    return current_app.extensions[EXTENSION]


def _safe_next(target: str | None) -> str:
    # Only our own pages: an absolute or scheme-relative URL would be an open redirect.
    if target and target.startswith("/ui/") and not target.startswith(("//", "/ui/auth/")):
        return target
    return "/ui/"


@bp.after_request
def _headers(response: Response) -> Response:
    # The callback's answer and its error pages are for this one browser, once.
    response.headers["Cache-Control"] = "private, no-store"
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


@bp.get("/login")
def login() -> BaseResponse | tuple[str, int]:
    """Start the flow: off to the provider, with state, nonce and the PKCE challenge."""
    settings = container().settings
    _forget_stale_flows()
    try:
        response = _client().authorize_redirect(redirect_uri(settings))
    except (requests.RequestException, ValueError) as exc:
        log.warning("identity provider unreachable: %s", type(exc).__name__)
        return _page(502, "The identity provider could not be reached; try again shortly.")
    cookie[_NEXT] = _safe_next(request.args.get("next"))
    return cast(BaseResponse, response)


def _forget_stale_flows() -> None:
    """Keep the newest few unfinished sign-ins (two tabs may sign in at once), drop the rest:
    each waits in the session cookie, which a browser drops past about 4 KB."""
    pending = sorted(
        (k for k in cookie if k.startswith(_PENDING)),
        key=lambda k: float((cookie.get(k) or {}).get("exp") or 0),
    )
    for key in pending[: -(_KEEP_PENDING - 1) or None]:
        cookie.pop(key, None)


@bp.get("/callback")
def callback() -> BaseResponse | tuple[str, int]:
    c = container()
    token = _verified_token(c.settings)
    if isinstance(token, tuple):
        return token  # the page that says why not
    claims = token.get("userinfo")
    if not isinstance(claims, Mapping):
        # Authlib verifies an ID token (and its nonce) only when there is one: without it
        # there is nobody to let in.
        return _refused_anonymously(403, "no ID token", "Sign-in refused: no ID token.")
    groups = _groups(c.settings.oidc_groups_claim, claims, token)
    grants = rolemap.grants_for(current_app.extensions[ROLES], groups)
    who = Principal(
        kind="user",
        id=str(claims.get("email") or claims["sub"]),
        label=str(claims.get("name") or ""),
        grants=grants,
    )
    if not grants:
        signins.refused(c.db, who.actor, HOW, "no role", {"groups": sorted(groups)})
        return _page(403, NO_ROLE)
    target = _safe_next(cookie.get(_NEXT))
    sign_in_person(c.settings, who)  # a fresh session: the flow's leftovers are gone
    signins.signed_in(
        c.db,
        who,
        HOW,
        groups=sorted(groups),
        grants={p or "*": sorted(s) for p, s in grants.items()},
    )
    return redirect(target)


def _verified_token(settings: Settings) -> dict[str, Any] | tuple[str, int]:
    """The token response with its ID token verified (``userinfo``: its claims), or a page."""
    from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped]
    from authlib.integrations.base_client import (  # type: ignore[import-untyped]
        MismatchingStateError,
    )

    client = _client()
    # A provider that restarts signs with a new key. Authlib keeps the key set it fetched
    # in the client's metadata; dropping it here loads the provider's current keys for each
    # sign-in. That is one small GET per sign-in, which is rare, and it is right whatever
    # changed at the provider (a new kid, or a key replaced under the same kid), which
    # "refetch when the kid is unknown" would not be.
    client.server_metadata.pop("jwks", None)
    try:
        token: dict[str, Any] = client.authorize_access_token(
            # The issuer configured here, not only the one its discovery document claims.
            claims_options={"iss": {"essential": True, "value": settings.oidc_issuer}},
        )
    except MismatchingStateError:
        # No such sign-in was started in this browser (a forged or replayed callback).
        return _refused_anonymously(400, "state mismatch", "This sign-in was not started here.")
    except AuthlibBaseError as exc:
        # The person cancelled, the provider refused the code exchange, or it is not https.
        reason = f"the identity provider answered {str(exc)[:200]}"
        return _refused_anonymously(403, reason, f"Sign-in refused: {reason}.")
    except JoseError as exc:
        # A bad signature, a wrong nonce, issuer or audience, an expired token.
        reason = f"the ID token did not verify ({str(exc)[:200]})"
        return _refused_anonymously(403, reason, f"Sign-in refused: {reason}.")
    except (requests.RequestException, ValueError) as exc:
        # Unreachable, or an answer that is not JSON.
        log.warning("identity provider unreachable: %s", type(exc).__name__)
        return _page(502, "The identity provider could not be reached; try again shortly.")
    return token


def _groups(claim: str, claims: Mapping[str, Any], token: dict[str, Any]) -> frozenset[str]:
    """The groups claim of the ID token, else of the userinfo endpoint (some providers put
    groups only there); a single group may come as a string."""
    value = claims.get(claim)
    if value is None:
        try:
            value = _client().userinfo(token=token).get(claim)
        except requests.RequestException as exc:
            log.warning("userinfo unreachable: %s", type(exc).__name__)
            value = None
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


def _refused_anonymously(status: int, reason: str, message: str) -> tuple[str, int]:
    signins.refused(container().db, signins.ANONYMOUS, HOW, reason)
    return _page(status, message)


def _page(status: int, message: str) -> tuple[str, int]:
    return render_template("signin_refused.html", message=message), status
