"""People sign in through a real OpenID provider: Chromium, node-oidc-provider, gunicorn.

The provider is tests/support/oidc (oidc-provider, OpenID Certified) with an admin, an
operator, a viewer and a user in no group; genvault runs as in production (migrate,
gunicorn, a worker, the sandbox) with GENVAULT_OIDC_* pointing at it. Each person gets a
fresh browser context: the provider keeps a single sign-on session in its cookies.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import boto3
import pytest
import requests

from tests.support.oidc_provider import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    OidcProvider,
    OidcProviderUnavailable,
    ensure_node_modules,
    free_port,
    node_available,
)
from tests.support.stack import Stack, start_stack

pytestmark = pytest.mark.e2e

ROLE_MAP = "genvault-admins:admin,genvault-operators:operator,genvault-viewers:viewer"
NO_ROLE = "your groups map to no genvault role"
TIMEOUT_MS = 15_000


def _unavailable(reason: str) -> None:
    required = [v for v in ("GENVAULT_REQUIRE_OIDC", "GENVAULT_REQUIRE_BROWSER") if os.getenv(v)]
    if required:
        pytest.fail(f"the OIDC sign-in test is required here ({required[0]}): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def signin_stack(
    s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, OidcProvider]]:
    """genvault with OIDC on, and its provider: one of each for the module (a start is slow)."""
    reason = node_available()
    if reason:
        _unavailable(reason)
    try:
        ensure_node_modules()
    except OidcProviderUnavailable as exc:
        _unavailable(str(exc))
    tmp = tmp_path_factory.mktemp("oidc-signin")
    bucket = f"genvault-oidc-{os.getpid()}-{int(time.time())}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    # The provider's port first: genvault needs its issuer, and it needs genvault's address.
    provider_port = free_port()
    stack = start_stack(
        tmp,
        s3_endpoint,
        bucket,
        f"sqlite:///{tmp / 'genvault.db'}",
        GENVAULT_OIDC_ISSUER=f"http://127.0.0.1:{provider_port}",
        GENVAULT_OIDC_CLIENT_ID=DEFAULT_CLIENT_ID,
        GENVAULT_OIDC_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        GENVAULT_OIDC_ROLE_MAP=ROLE_MAP,
    )
    try:
        provider = OidcProvider(
            tmp / "provider",
            port=provider_port,
            redirect_uris=[f"{stack.web_url}/ui/auth/callback"],
        )
        with provider:
            yield stack, provider
    finally:
        stack.stop()


@pytest.fixture
def contexts(browser: Any) -> Iterator[Callable[[], Any]]:
    """Fresh browser contexts (no cookies of anyone else), closed after the test."""
    made: list[Any] = []

    def new() -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        made.append(context)
        return context

    yield new
    for context in made:
        context.close()


def _log_in_at_provider(page: Any, provider: OidcProvider, username: str) -> None:
    page.wait_for_url(f"{provider.issuer}/interaction/**")
    page.fill("#username", username)
    page.fill("#password", provider.user(username).password)
    page.click("#submit")


def _sign_in(
    page: Any, stack: Stack, provider: OidcProvider, username: str, start: str = "/ui/"
) -> Any:
    """From ``start``, through the sign-in page and the provider's form; the page genvault
    answers with."""
    page.goto(f"{stack.web_url}{start}")
    assert "/ui/login" in page.url
    assert page.locator("input[name=token]").count() == 0  # the token form is off
    page.click("#oidc-signin")
    _log_in_at_provider(page, provider, username)
    page.wait_for_url(lambda url: url.startswith(stack.web_url))
    return page


def _nav(page: Any) -> set[str]:
    links: list[str] = page.eval_on_selector_all("header nav a", "as => as.map(a => a.id)")
    return {link for link in links if link.startswith("nav-")}


def _audit(stack: Stack, action: str, actor: str) -> list[dict[str, Any]]:
    r = requests.get(
        f"{stack.web_url}/v1/audit-log",
        params={"action": action, "actor": actor},
        headers=stack.auth,
        timeout=10,
    )
    r.raise_for_status()
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


def _authorization_url(context: Any, stack: Stack) -> str:
    """Where genvault sends the browser to sign in, without going: the flow's state, nonce
    and PKCE verifier are in the context's session cookie, the URL is ours to alter."""
    r = context.request.get(f"{stack.web_url}/ui/auth/login", max_redirects=0)
    assert r.status == 302, r.text()
    location: str = r.headers["location"]
    return location


def _back_at_genvault(page: Any, stack: Stack, provider: OidcProvider, username: str) -> None:
    """Through the provider's form if it shows one (it remembers who signed in)."""
    page.wait_for_url(lambda url: url.startswith((stack.web_url, f"{provider.issuer}/interaction")))
    if not page.url.startswith(stack.web_url):
        _log_in_at_provider(page, provider, username)
        page.wait_for_url(lambda url: url.startswith(stack.web_url))


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [(k, value if k == name else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_each_role_sees_what_it_may(
    signin_stack: tuple[Stack, OidcProvider], contexts: Callable[[], Any], tmp_path: Path
) -> None:
    stack, provider = signin_stack
    params = {"model_id": "flux", "width": 512, "height": 512, "samples": 1}
    # The provider accepts it, then reports the generation failed: a retry resubmits it.
    job = stack.submit("modelslab/text2img", {**params, "prompt": "[sandbox:fail] a red fox"})
    assert stack.wait_status(job["id"], "failed")["status"] == "failed"
    job_url = f"{stack.web_url}/ui/jobs/{job['id']}"

    admin = _sign_in(contexts().new_page(), stack, provider, "admin")
    assert admin.url == f"{stack.web_url}/ui/"
    assert _nav(admin) == {"nav-keys", "nav-projects", "nav-audit-log"}
    for link, heading in (
        ("#nav-keys", "API keys"),
        ("#nav-projects", "Projects"),
        ("#nav-audit-log", "Audit log"),
    ):
        admin.click(link)
        assert admin.inner_text("main h1") == heading
        admin.screenshot(path=str(tmp_path / f"{link[5:]}.png"), full_page=True)
    rows = admin.eval_on_selector_all("#audit-log tr[data-action]", "rs => rs.length")
    assert rows >= 1  # its own sign-in, at least
    cookie = next(c for c in admin.context.cookies() if c["name"] == "genvault_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["expires"] > 0

    # Back where they started: the sign-in keeps the page that asked for it.
    operator = _sign_in(contexts().new_page(), stack, provider, "operator", f"/ui/jobs/{job['id']}")
    assert operator.url == job_url
    assert _nav(operator) == set()
    assert operator.locator("#retry button").is_visible()
    assert operator.goto(f"{stack.web_url}/ui/keys").status == 403

    viewer = _sign_in(contexts().new_page(), stack, provider, "viewer")
    assert _nav(viewer) == set()
    viewer.goto(job_url)
    assert viewer.locator("#retry").count() == 0
    # Pressing a button that is not there: the POST itself is refused, CSRF token and all.
    token = viewer.get_attribute("input[name=csrf_token]", "value")
    assert token
    refused = viewer.request.post(f"{job_url}/retry", form={"csrf_token": token})
    assert refused.status == 403
    assert "jobs:retry" in refused.text()
    assert stack.job(job["id"])["status"] == "failed"

    admin.click("text=Sign out")
    assert "/ui/login" in admin.goto(f"{stack.web_url}/ui/keys").url

    for username in ("admin", "operator", "viewer"):
        rows = _audit(stack, "signin.success", f"user:{username}@example.test")
        assert len(rows) >= 1 and rows[0]["changes"]["via"] == "oidc"


def test_a_person_whose_groups_map_to_no_role_is_refused_and_told_why(
    signin_stack: tuple[Stack, OidcProvider], contexts: Callable[[], Any]
) -> None:
    stack, provider = signin_stack
    page = _sign_in(contexts().new_page(), stack, provider, "nobody")
    assert "/ui/auth/callback" in page.url
    assert NO_ROLE in page.inner_text("main").lower()
    assert "GENVAULT_OIDC_ROLE_MAP" in page.inner_text("main")
    assert page.goto(f"{stack.web_url}/ui/").url.startswith(f"{stack.web_url}/ui/login")
    (row,) = _audit(stack, "signin.refused", "user:nobody@example.test")
    assert row["outcome"] == "refused" and row["changes"]["reason"] == "no role"


def test_a_tampered_state_or_nonce_is_refused(
    signin_stack: tuple[Stack, OidcProvider], contexts: Callable[[], Any]
) -> None:
    stack, provider = signin_stack
    context = contexts()
    page = context.new_page()
    genuine = _authorization_url(context, stack)

    # state: the provider echoes it back to the callback; one this browser never sent is
    # a forged or replayed callback.
    before = len(_audit(stack, "signin.refused", "anonymous"))
    page.goto(_with_param(genuine, "state", "not-the-state-we-sent"))
    _back_at_genvault(page, stack, provider, "admin")
    assert "/ui/auth/callback" in page.url and "state=not-the-state-we-sent" in page.url
    assert "not started here" in page.inner_text("main")
    answer = page.goto(page.url)  # the same callback again: still refused, still 400
    assert answer is not None and answer.status == 400
    assert "/ui/login" in page.goto(f"{stack.web_url}/ui/").url  # no session came of it
    refusals = _audit(stack, "signin.refused", "anonymous")
    assert len(refusals) == before + 2 and refusals[0]["changes"]["reason"] == "state mismatch"
    # The untouched flow of the same browser still signs in: only the forgery was refused.
    page.goto(genuine)
    _back_at_genvault(page, stack, provider, "admin")
    assert page.url == f"{stack.web_url}/ui/"

    # nonce: the ID token comes back with a nonce this browser's sign-in never made.
    context = contexts()
    page = context.new_page()
    page.goto(_with_param(_authorization_url(context, stack), "nonce", "someone-elses-nonce"))
    _back_at_genvault(page, stack, provider, "admin")
    assert "/ui/auth/callback" in page.url
    refusal = page.inner_text("main")
    assert "did not verify" in refusal and "nonce" in refusal, refusal
    assert "/ui/login" in page.goto(f"{stack.web_url}/ui/").url
    assert "nonce" in _audit(stack, "signin.refused", "anonymous")[0]["changes"]["reason"]


def test_a_provider_restarted_with_a_new_signing_key_still_signs_people_in(
    signin_stack: tuple[Stack, OidcProvider], contexts: Callable[[], Any]
) -> None:
    stack, provider = signin_stack
    jwks = f"{provider.issuer}/jwks"

    def kids() -> set[str]:
        return {k["kid"] for k in requests.get(jwks, timeout=10).json()["keys"]}

    # Sign in on every web process, so each has fetched the old keys.
    for _ in range(3):
        page = _sign_in(contexts().new_page(), stack, provider, "admin")
        assert page.url == f"{stack.web_url}/ui/"
    old = kids()
    provider.restart()
    assert kids().isdisjoint(old)

    for _ in range(3):
        page = _sign_in(contexts().new_page(), stack, provider, "operator")
        assert page.url == f"{stack.web_url}/ui/", page.inner_text("main")
        assert page.locator("[data-job-id], main").count() >= 1
