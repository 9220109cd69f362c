"""One JSON POST to a provider, with the failure modes every provider shares."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from service.providers.base import ProviderError, ProviderUnreachable
from service.providers.parsing import read_json

log = logging.getLogger(__name__)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never made, so the provider cannot have the request."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    reason = getattr(exc.args[0], "reason", None)  # urllib3's MaxRetryError
    return isinstance(reason, NewConnectionError)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    payload: Any  # the decoded JSON, or None when the body was not JSON


def post_json(
    session: requests.Session,
    url: str,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
    what: str,
) -> Answer:
    """POST ``body``; transport failures become ProviderError (transient) without secrets."""
    started = time.monotonic()
    try:
        # No redirects: a redirected request would carry the key (in the body or the
        # Authorization header) to wherever the Location header points.
        response = session.post(
            url,
            json=body,
            headers=dict(headers),
            timeout=timeout,
            allow_redirects=False,
            stream=True,
        )
    except requests.RequestException as exc:
        # `from None`: requests' exceptions hold the prepared request, key and all.
        if _never_sent(exc):
            raise ProviderError(f"Could not reach {provider} ({type(exc).__name__})") from None
        if isinstance(exc, requests.Timeout):
            raise ProviderUnreachable(f"{provider} did not answer within {timeout:g} s") from None
        raise ProviderUnreachable(f"{provider} did not answer ({type(exc).__name__})") from None
    with response:
        try:
            payload = read_json(response, provider)
        except requests.RequestException as exc:
            raise ProviderUnreachable(
                f"{provider}'s answer broke off ({type(exc).__name__})"
            ) from None
    log.info(
        "%s %s answered HTTP %s in %.2f s",
        provider,
        what,
        response.status_code,
        time.monotonic() - started,
    )
    return Answer(response.status_code, response.headers, payload)
