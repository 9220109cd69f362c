"""The AI/ML API client: a synchronous Bearer-authenticated POST that returns the images."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

import requests

from service.providers.base import (
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderResult,
)
from service.providers.endpoints import SERVICE_OWNED_FIELDS, EndpointSpec, get_endpoint
from service.providers.parsing import parse_aimlapi, readable_message, retry_after
from service.providers.transport import post_json

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER = 30.0


class AimlApiClient:
    """Provider ``aimlapi``: Flux Kontext image-to-image through ``/v1/images/generations``."""

    name = "aimlapi"

    def __init__(
        self, base_url: str, api_key: str | None, session: requests.Session, timeout: float
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self._session = session
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AimlApiClient(base_url={self._base_url!r})"

    def submit(
        self,
        endpoint: str,
        params: Mapping[str, Any],
        *,
        webhook_url: str | None,
        track_id: str,
    ) -> ProviderResult:
        """Generate and return the images. The API has no webhook and no ``track_id`` field,
        so both are not sent (an unknown field could be refused)."""
        spec = get_endpoint(endpoint)
        if spec.provider != self.name:
            raise ProviderRejected(f"{endpoint} is not an AI/ML API endpoint")
        if not self._api_key:
            raise ProviderAuthError("No AI/ML API key: set AIMLAPI_API_KEY")
        body = {name: value for name, value in params.items() if name not in SERVICE_OWNED_FIELDS}
        return self._post(spec, body, self._api_key)

    def fetch(self, endpoint: str, request_id: str | None, fetch_url: str | None) -> ProviderResult:
        """There is nothing to poll: the submit answer carried the images."""
        raise ProviderRejected("AI/ML API answers synchronously; there is nothing to poll")

    def parse_callback(self, body: Mapping[str, Any]) -> ProviderResult:
        """AI/ML API sends no webhooks for image models, so any callback is refused."""
        raise ProviderRejected("AI/ML API sends no webhooks for image models")

    def _post(self, spec: EndpointSpec, body: Mapping[str, Any], key: str) -> ProviderResult:
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        answer = post_json(
            self._session,
            self._base_url + spec.path,
            body,
            headers=headers,
            timeout=self._timeout,
            provider="AI/ML API",
            what=spec.name,
        )
        payload = answer.payload
        if answer.status >= 300 or not isinstance(payload, Mapping):
            _raise_for(answer.status, answer.headers, payload, key)
        return parse_aimlapi(payload, secrets=(key,))


def _raise_for(status: int, headers: Mapping[str, str], payload: Any, key: str) -> NoReturn:
    """Translate an error answer: ``{message, path, requestId, statusCode, timestamp}``."""
    body: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    message = readable_message(body.get("message") or body.get("error"), (key,))
    detail = f": {message}" if message else ""
    if status == 429:
        raise ProviderError(
            f"AI/ML API rate limit{detail}",
            retry_after=retry_after(body, headers) or DEFAULT_RETRY_AFTER,
        )
    if status == 401:
        raise ProviderAuthError("AI/ML API rejected the API key: check AIMLAPI_API_KEY")
    if status == 403:
        raise ProviderAuthError(
            f"AI/ML API refused the request (no credits left, or the plan does not allow this"
            f" model): top up the account{detail}"
        )
    if status >= 500 or status < 300:
        # A 2xx without a JSON object is a broken answer, as transient as a 5xx.
        raise ProviderError(
            f"AI/ML API answered HTTP {status}{detail or ' without JSON'}",
            retry_after=retry_after(body, headers),
        )
    raise ProviderRejected(f"AI/ML API refused the request (HTTP {status}){detail}")
