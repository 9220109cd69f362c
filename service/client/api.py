"""ApiClient: the /v1 API over requests, with errors as one readable line.

Needs no database and no secret: only the server's URL and an API token, from
GENVAULT_URL and GENVAULT_TOKEN, defaulting to what `make run` (`genvault dev`) serves.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from service import __version__
from service.config import DEV_API_TOKEN
from service.errors import GenvaultError

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TOKEN = DEV_API_TOKEN
TERMINAL = ("archived", "failed")


class ApiError(GenvaultError):
    """The API could not be reached or refused the request."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return "connection failed"


def _error_line(response: requests.Response) -> ApiError:
    try:
        body = response.json()
        error = body["error"]
        message = str(error.get("message") or response.reason)
        details = [f"{e['field']}: {e['message']}" for e in error.get("errors") or []]
        code = str(error.get("code") or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, details, code = response.reason or "error", [], ""
    if details:
        message = "; ".join(details)
    return ApiError(f"HTTP {response.status_code}: {message}", response.status_code, code or None)


class ApiClient:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        token: str = DEFAULT_TOKEN,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.session.headers["User-Agent"] = f"genvault-cli/{__version__}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiClient:
        env = os.environ if env is None else env
        return cls(
            env.get("GENVAULT_URL") or DEFAULT_URL, env.get("GENVAULT_TOKEN") or DEFAULT_TOKEN
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise ApiError(
                f"cannot reach {self.base_url}: {_reason(exc)} (is genvault running? "
                "set GENVAULT_URL to its address)"
            ) from None
        except requests.Timeout:
            raise ApiError(f"{self.base_url} did not answer within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise ApiError(f"request to {self.base_url} failed: {type(exc).__name__}") from None
        if response.status_code == 401:
            raise ApiError(
                "HTTP 401: the API refused the token (set GENVAULT_TOKEN to one of the "
                "server's GENVAULT_API_TOKENS)",
                401,
                "unauthorized",
            )
        if response.status_code >= 400:
            raise _error_line(response)
        if response.status_code == 204 or not response.content:
            return None  # DELETE and friends: nothing to say
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{url} answered {response.status_code} with no JSON") from None

    def submit(
        self,
        endpoint: str,
        params: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"endpoint": endpoint, "params": dict(params), "metadata": dict(metadata or {})}
        result: dict[str, Any] = self.request("POST", "/v1/jobs", json=body, headers=headers)
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/v1/jobs/{job_id}")
        return result

    def jobs(
        self,
        *,
        status: str | None = None,
        endpoint: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        query = {"status": status, "endpoint": endpoint, "limit": limit, "cursor": cursor}
        params = {k: v for k, v in query.items() if v is not None}
        result: dict[str, Any] = self.request("GET", "/v1/jobs", params=params)
        return result

    def retry(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/v1/jobs/{job_id}/retry")
        return result

    def delete_job(self, job_id: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "DELETE", f"/v1/jobs/{job_id}", json={"reason": reason}
        )
        return result

    def audit(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/v1/jobs/{job_id}/audit")
        return result

    def wait(
        self,
        job_id: str,
        *,
        timeout: float,
        interval: float = 0.5,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is archived or failed (or ``timeout`` passes); the last view."""
        deadline = time.monotonic() + timeout
        seen: str | None = None
        while True:
            job = self.job(job_id)
            if job["status"] != seen:
                seen = job["status"]
                if on_change is not None:
                    on_change(job)
            if seen in TERMINAL or time.monotonic() >= deadline:
                return job
            time.sleep(interval)
