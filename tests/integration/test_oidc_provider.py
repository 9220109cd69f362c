"""The test OpenID Connect provider (tests/support/oidc) does what the OIDC tests rely on.

A full authorization code + PKCE flow with plain ``requests`` (no browser): the login form,
the automatic consent, the code exchange, an RS256 ID token carrying ``groups`` and the
nonce; and a restart that rotates the signing key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.oidc_provider import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_USERS,
    OidcProvider,
    OidcProviderUnavailable,
    ensure_node_modules,
    node_available,
)

REDIRECT_URI = "http://127.0.0.1:9/ui/auth/callback"  # never connected to
SCOPE = "openid profile email groups"
TIMEOUT = 10


def _unavailable(reason: str) -> None:
    if os.environ.get("GENVAULT_REQUIRE_OIDC"):
        pytest.fail(f"the OIDC provider is required here (GENVAULT_REQUIRE_OIDC): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_modules() -> None:
    reason = node_available()
    if reason:
        _unavailable(reason)
    try:
        ensure_node_modules()
    except OidcProviderUnavailable as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="module")
def provider(
    node_modules: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path_factory.mktemp("oidc"), redirect_uris=[REDIRECT_URI]) as op:
        yield op


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def discovery(op: OidcProvider) -> dict[str, Any]:
    response = requests.get(op.discovery_url, timeout=TIMEOUT)
    response.raise_for_status()
    meta: dict[str, Any] = response.json()
    return meta


def jwks_kids(op: OidcProvider) -> set[str]:
    response = requests.get(discovery(op)["jwks_uri"], timeout=TIMEOUT)
    response.raise_for_status()
    return {key["kid"] for key in response.json()["keys"]}


@dataclass
class Flow:
    """One authorization request of a relying party: its PKCE verifier, state and nonce."""

    op: OidcProvider
    session: requests.Session
    verifier: str
    state: str
    nonce: str

    @classmethod
    def begin(cls, op: OidcProvider, session: requests.Session) -> Flow:
        verifier, state, nonce = (secrets.token_urlsafe(n) for n in (48, 12, 12))
        return cls(op, session, verifier, state, nonce)

    def authorization_url(self, **overrides: str) -> str:
        params = {
            "response_type": "code",
            "client_id": DEFAULT_CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": b64url(hashlib.sha256(self.verifier.encode()).digest()),
            "code_challenge_method": "S256",
            **overrides,
        }
        endpoint = discovery(self.op)["authorization_endpoint"]
        url = requests.Request("GET", endpoint, params=params).prepare().url
        assert url is not None
        return url

    def follow(self, response: requests.Response) -> requests.Response | str:
        """Follow the provider's redirects; the one to the RP's callback is returned as a URL."""
        for _ in range(10):
            if response.status_code not in (302, 303):
                return response
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(REDIRECT_URI):
                return location
            response = self.session.get(location, allow_redirects=False, timeout=TIMEOUT)
        raise AssertionError(f"too many redirects, last at {response.url}")

    def open(self, **overrides: str) -> requests.Response | str:
        url = self.authorization_url(**overrides)
        return self.follow(self.session.get(url, allow_redirects=False, timeout=TIMEOUT))

    def login(
        self, page: requests.Response, username: str, password: str
    ) -> requests.Response | str:
        action = re.search(r'<form id="login" method="post" action="([^"]+)"', page.text)
        assert action, page.text
        response = self.session.post(
            urljoin(page.url, action.group(1)),
            data={"username": username, "password": password},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        return self.follow(response)

    def code_from(self, callback: str) -> str:
        query = parse_qs(urlsplit(callback).query)
        assert query["state"] == [self.state]
        assert query["iss"] == [self.op.issuer]  # RFC 9207, oidc-provider sends it
        return query["code"][0]

    def exchange(self, code: str, verifier: str | None = None) -> requests.Response:
        return requests.post(
            discovery(self.op)["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier or self.verifier,
            },
            auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
            timeout=TIMEOUT,
        )


def login_as(op: OidcProvider, username: str) -> tuple[Flow, dict[str, Any]]:
    """A whole flow for ``username``: the token response, the ID token verified and decoded."""
    with requests.Session() as session:
        flow = Flow.begin(op, session)
        page = flow.open()
        assert isinstance(page, requests.Response), page
        callback = flow.login(page, username, op.user(username).password)
        assert isinstance(callback, str), callback.text if callback else callback
        tokens = flow.exchange(flow.code_from(callback))
        assert tokens.status_code == 200, tokens.text
        return flow, tokens.json()


def verified_claims(op: OidcProvider, id_token: str) -> dict[str, Any]:
    """Check the RS256 signature against the provider's JWKS, then decode the payload."""
    header_b64, payload_b64, signature_b64 = id_token.split(".")
    header = json.loads(b64url_decode(header_b64))
    assert header["alg"] == "RS256"
    keys = requests.get(discovery(op)["jwks_uri"], timeout=TIMEOUT).json()["keys"]
    jwk = next(key for key in keys if key["kid"] == header["kid"])
    public_key = rsa.RSAPublicNumbers(
        int.from_bytes(b64url_decode(jwk["e"])), int.from_bytes(b64url_decode(jwk["n"]))
    ).public_key()
    public_key.verify(  # raises InvalidSignature
        b64url_decode(signature_b64),
        f"{header_b64}.{payload_b64}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    claims: dict[str, Any] = json.loads(b64url_decode(payload_b64))
    return claims


def test_discovery(provider: OidcProvider) -> None:
    meta = discovery(provider)

    assert meta["issuer"] == provider.issuer
    assert meta["jwks_uri"] == f"{provider.issuer}/jwks"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "profile", "email", "groups"} <= set(meta["scopes_supported"])
    assert {"client_secret_basic", "client_secret_post"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "groups" in meta["claims_supported"]


def test_code_flow_with_pkce_puts_groups_in_the_id_token(provider: OidcProvider) -> None:
    flow, tokens = login_as(provider, "admin")
    claims = verified_claims(provider, tokens["id_token"])

    admin = provider.user("admin")
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == DEFAULT_CLIENT_ID
    assert claims["nonce"] == flow.nonce
    assert claims["sub"] == "admin"
    assert claims["groups"] == ["genvault-admins"]
    assert claims["email"] == admin.email
    assert claims["email_verified"] is True
    assert claims["name"] == admin.name
    assert tokens["token_type"] == "Bearer"

    userinfo = requests.get(
        discovery(provider)["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=TIMEOUT,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["groups"] == ["genvault-admins"]


@pytest.mark.parametrize(
    ("username", "groups"),
    [("operator", ["genvault-operators"]), ("viewer", ["genvault-viewers"]), ("nobody", [])],
)
def test_each_default_user_gets_their_groups(
    provider: OidcProvider, username: str, groups: list[str]
) -> None:
    _, tokens = login_as(provider, username)
    claims = verified_claims(provider, tokens["id_token"])

    assert claims["sub"] == username
    assert claims.get("groups", []) == groups


def test_default_users() -> None:
    by_name = {user.username: user for user in DEFAULT_USERS}
    assert set(by_name) == {"admin", "operator", "viewer", "nobody"}
    assert all(user.password == f"pw-{user.username}" for user in DEFAULT_USERS)
    assert by_name["nobody"].groups == ()


def test_login_page_and_wrong_password(provider: OidcProvider) -> None:
    with requests.Session() as session:
        flow = Flow.begin(provider, session)
        page = flow.open()
        assert isinstance(page, requests.Response)
        assert page.status_code == 200
        assert re.search(r"/interaction/[\w-]+$", page.url), page.url
        for marker in ('name="username"', 'name="password"', 'id="submit"'):
            assert marker in page.text

        again = flow.login(page, "admin", "wrong")
        assert isinstance(again, requests.Response)
        assert again.status_code == 401
        assert 'id="error"' in again.text

        callback = flow.login(again, "admin", "pw-admin")  # the same interaction goes on
        assert isinstance(callback, str)
        assert flow.exchange(flow.code_from(callback)).status_code == 200


def test_pkce_is_required_and_checked(provider: OidcProvider) -> None:
    with requests.Session() as session:
        flow = Flow.begin(provider, session)
        url = flow.authorization_url()
        without = re.sub(r"&code_challenge(_method)?=[^&]*", "", url)
        refused = flow.follow(session.get(without, allow_redirects=False, timeout=TIMEOUT))
        assert isinstance(refused, str)
        assert parse_qs(urlsplit(refused).query)["error"] == ["invalid_request"]

        page = flow.open()
        assert isinstance(page, requests.Response)
        callback = flow.login(page, "viewer", "pw-viewer")
        assert isinstance(callback, str)
        wrong = flow.exchange(flow.code_from(callback), verifier=secrets.token_urlsafe(48))
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "invalid_grant"


def test_restart_rotates_the_signing_key(node_modules: None, tmp_path: Path) -> None:
    with OidcProvider(tmp_path, redirect_uris=[REDIRECT_URI]) as op:
        issuer, before = op.issuer, jwks_kids(op)
        op.restart()
        after = jwks_kids(op)

        assert op.issuer == issuer
        assert before
        assert after
        assert before.isdisjoint(after)
        _, tokens = login_as(op, "admin")
        header = json.loads(b64url_decode(tokens["id_token"].split(".")[0]))
        assert header["kid"] in after
    assert not op.running
