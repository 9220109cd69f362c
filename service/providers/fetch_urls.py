"""Where a poll may go: the configured base URL, never a host a provider body names.

A ``fetch_result`` URL arrives in provider bodies, and webhook bodies come from the
internet: whoever holds one valid webhook URL can put any URL there. ModelsLab's fetch takes
the API key in the body, so the URL we POST to decides who receives the key. Fetch URLs are
therefore built from MODELSLAB_BASE_URL and the request id; a provider's URL is recorded and
used only when there is no id (enterprise servers answer ``"id": null``), and then only if it
is plainly inside the base URL as the HTTP client itself reads it.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

# Characters parsers disagree about ("\" is "/" to a browser and to WHATWG, userinfo to
# others), and that no provider's fetch URL contains.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]")
# Encoded dots, slashes, backslashes, "@" and NUL: a server that decodes before routing
# would read a different path (or host) than the one checked here.
_ENCODED = re.compile(r"%(2e|2f|5c|40|00)", re.IGNORECASE)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def documented_fetch_url(base_url: str, template: str, request_id: str) -> str:
    """The fetch endpoint of PROVIDERS.md for ``request_id`` (one quoted path segment)."""
    return base_url.rstrip("/") + template.format(id=quote(request_id, safe=""))


def inside_base_url(url: str, base_url: str) -> bool:
    """True only for a URL on the base URL's origin and under its path, with nothing odd.

    Parsed with urllib3's ``parse_url``, the parser requests (and so our HTTP session) uses
    to pick the host it connects to: the check and the connection cannot read the URL
    differently. Refused outright: backslashes, whitespace and control characters, userinfo
    (``user@``), a fragment, any ``@`` at all, and percent-encoded ``. / \\ @`` and NUL.
    """
    if _AMBIGUOUS.search(url) or _ENCODED.search(url) or "@" in url:
        return False
    try:
        one, base = parse_url(url), parse_url(base_url)
    except LocationParseError:
        return False
    if one.auth is not None or one.fragment is not None or one.host is None:
        return False
    scheme, base_scheme = (one.scheme or "").lower(), (base.scheme or "").lower()
    if scheme not in _DEFAULT_PORTS or scheme != base_scheme:
        return False
    # parse_url has removed dot segments, so "/api/../admin" cannot pass as "/api/…".
    base_path = (base.path or "").rstrip("/") + "/"
    return (
        one.host.lower() == (base.host or "").lower()
        and (one.port or _DEFAULT_PORTS[scheme]) == (base.port or _DEFAULT_PORTS[base_scheme])
        and (one.path or "").startswith(base_path)
    )
