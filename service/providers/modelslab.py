"""The ModelsLab client: JSON POSTs with the key in the body, webhooks, fetch polling."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import requests

from service.config import env_name
from service.providers.base import (
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderResult,
    ResultStatus,
)
from service.providers.endpoints import SERVICE_OWNED_FIELDS, EndpointSpec, get_endpoint
from service.providers.fetch_urls import documented_fetch_url, inside_base_url
from service.providers.parsing import (
    modelslab_status,
    parse_modelslab,
    readable_message,
    retry_after,
)
from service.providers.transport import post_json

log = logging.getLogger(__name__)

# What the official Python SDK sends; ModelsLab's edge treats SDK traffic as API traffic.
HEADERS = {"X-Requested-With": "modelslab-py", "Accept": "application/json"}
# ModelsLab asks for 30 s after its queue limit or its spam filter trips.
DEFAULT_RETRY_AFTER = 30.0

_RATE_LIMITED = re.compile(r"rate limit", re.IGNORECASE)
_BAD_KEY = re.compile(r"invalid (api )?key", re.IGNORECASE)


class ModelsLabClient:
    """Provider ``modelslab``: text2img, Kontext img2img and the enterprise Kontext server."""

    name = "modelslab"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        enterprise_api_key: str | None,
        session: requests.Session,
        timeout: float,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._keys = {
            "modelslab_api_key": api_key or None,
            "modelslab_enterprise_api_key": enterprise_api_key or None,
        }
        self._session = session
        self._timeout = timeout

    def __repr__(self) -> str:  # the default would be harmless, but keys must never print
        return f"ModelsLabClient(base_url={self._base_url!r})"

    def submit(
        self,
        endpoint: str,
        params: Mapping[str, Any],
        *,
        webhook_url: str | None,
        track_id: str,
    ) -> ProviderResult:
        """POST the generation request with our key, webhook and track id."""
        spec = self._spec(endpoint)
        key = self._key(spec)
        body = {name: value for name, value in params.items() if name not in SERVICE_OWNED_FIELDS}
        body["key"] = key
        body["track_id"] = track_id
        if webhook_url is not None:
            body["webhook"] = webhook_url
        return self._post(spec, self._base_url + spec.path, body)

    def fetch(self, endpoint: str, request_id: str | None, fetch_url: str | None) -> ProviderResult:
        """Poll a request at the documented fetch path under the base URL (see fetch_urls)."""
        spec = self._spec(endpoint)
        key = self._key(spec)
        return self._post(spec, self._fetch_target(spec, request_id, fetch_url), {"key": key})

    def parse_callback(self, body: Mapping[str, Any]) -> ProviderResult:
        """Normalise a webhook body; it is authenticated by the caller, not here."""
        return parse_modelslab(body, secrets=self._secrets)

    @property
    def _secrets(self) -> tuple[str, ...]:
        return tuple(key for key in self._keys.values() if key)

    def _spec(self, endpoint: str) -> EndpointSpec:
        spec = get_endpoint(endpoint)
        if spec.provider != self.name:
            raise ProviderRejected(f"{endpoint} is not a ModelsLab endpoint")
        return spec

    def _key(self, spec: EndpointSpec) -> str:
        key = self._keys.get(spec.key_setting)
        if not key:
            raise ProviderAuthError(
                f"No ModelsLab key for {spec.name}: set {env_name(spec.key_setting)}"
            )
        return key

    def _fetch_target(
        self, spec: EndpointSpec, request_id: str | None, fetch_url: str | None
    ) -> str:
        # The key goes in the body, so the URL decides who receives it: built from our base
        # URL and the id. A provider-given fetch_result is recorded, not followed, unless
        # there is no id to build from; then it must lie inside the base URL.
        if request_id and spec.fetch_path_template:
            return documented_fetch_url(self._base_url, spec.fetch_path_template, request_id)
        if fetch_url and inside_base_url(fetch_url, self._base_url):
            return fetch_url
        if fetch_url:
            raise ProviderRejected(
                "Cannot poll ModelsLab: the answer carried no request id and its fetch_result"
                " is not under MODELSLAB_BASE_URL (not called, the API key stays here)"
            )
        raise ProviderRejected("Cannot poll ModelsLab: no request id and no fetch_result")

    def _post(self, spec: EndpointSpec, url: str, body: Mapping[str, Any]) -> ProviderResult:
        answer = post_json(
            self._session,
            url,
            body,
            headers=HEADERS,
            timeout=self._timeout,
            provider="ModelsLab",
            what=spec.name,
        )
        return self._interpret(spec, answer.status, answer.headers, answer.payload)

    def _interpret(
        self, spec: EndpointSpec, http_status: int, headers: Mapping[str, str], payload: Any
    ) -> ProviderResult:
        """Map an answer to a result or an error; the body's ``status`` decides, except for
        the HTTP codes that speak of the account (401, 402, 403) or of load (429, 5xx)."""
        body: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
        message = readable_message(body.get("message", body.get("messege")), self._secrets)
        env = env_name(spec.key_setting)
        # Error bodies are read for what they say; a processing body's message is chatter.
        said = (
            message if http_status >= 400 or modelslab_status(body) is ResultStatus.FAILED else ""
        )
        if http_status == 429 or (said and _RATE_LIMITED.search(said)):
            wait = retry_after(body, headers) or DEFAULT_RETRY_AFTER
            raise ProviderError(
                f"ModelsLab rate limit: {message or 'too many requests'}", retry_after=wait
            )
        if http_status == 401 or (said and _BAD_KEY.search(said)):
            raise ProviderAuthError(f"ModelsLab rejected the API key: check {env}")
        if http_status == 402:
            raise ProviderAuthError("ModelsLab reports no credits left: top up the account")
        if http_status == 403:
            raise ProviderAuthError(
                f"ModelsLab's plan for {env} does not allow {spec.name}: upgrade the plan"
            )
        if http_status >= 500:
            raise ProviderError(
                f"ModelsLab answered HTTP {http_status}" + (f": {message}" if message else ""),
                retry_after=retry_after(body, headers),
            )
        if 300 <= http_status < 400:
            raise ProviderRejected(
                f"ModelsLab answered HTTP {http_status} (a redirect, not followed with the key):"
                " check MODELSLAB_BASE_URL"
            )
        if not isinstance(payload, Mapping):
            if http_status >= 400:
                raise ProviderRejected(f"ModelsLab answered HTTP {http_status} without JSON")
            raise ProviderError(f"ModelsLab answered HTTP {http_status} without JSON")
        # A processing body has been seen with HTTP 400: only a body that says so is an error.
        if http_status >= 400 and modelslab_status(payload) not in (
            ResultStatus.PROCESSING,
            ResultStatus.SUCCESS,
        ):
            raise ProviderRejected(
                f"ModelsLab refused the request: {message or f'HTTP {http_status}'}"
            )
        return parse_modelslab(payload, secrets=self._secrets)
