"""What every provider client offers, and the result types the use-cases consume."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.errors import PermanentError, TransientError


class ResultStatus(enum.StrEnum):
    SUCCESS = "success"
    PROCESSING = "processing"
    FAILED = "failed"


@dataclass(frozen=True)
class ProviderResult:
    """A provider's answer (submit, fetch or webhook), normalised.

    ``outputs`` are the image locations in output order: http(s) URLs, or ``data:`` URIs
    for images the provider returned inline (AI/ML API ``b64_json``). When ``base64_files``
    is true the URLs point to text files holding base64 image data, to be decoded.
    ``raw`` is the provider's body with every secret removed, kept for the manifest.
    """

    status: ResultStatus
    request_id: str | None = None
    outputs: tuple[str, ...] = ()
    eta_seconds: float | None = None
    fetch_url: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    nsfw: bool | None = None
    base64_files: bool = False
    width: int | None = None
    height: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    # The `track_id` a webhook body carries (ModelsLab sends a string or a number).
    track_id: str | None = None


class ProviderError(TransientError):
    """The provider could not be reached or answered with a temporary error."""


class ProviderUnreachable(ProviderError):
    """No answer came after the request was sent: it may or may not have reached the provider."""


class ProviderRejected(PermanentError):
    """The provider refused the request; retrying will not help."""

    code = "provider_error"


class ProviderAuthError(PermanentError):
    """The provider refused our credentials or plan; an operator must act."""

    code = "provider_auth"


class Provider(Protocol):
    """A client for one provider (``modelslab``, ``aimlapi``)."""

    name: str

    def submit(
        self,
        endpoint: str,
        params: Mapping[str, Any],
        *,
        webhook_url: str | None,
        track_id: str,
    ) -> ProviderResult:
        """Send a generation request.

        Raises ProviderError (retry), ProviderRejected or ProviderAuthError (fail the job).
        """

    def fetch(self, endpoint: str, request_id: str | None, fetch_url: str | None) -> ProviderResult:
        """Poll a request's state, preferring ``fetch_url`` when the provider gave one."""

    def parse_callback(self, body: Mapping[str, Any]) -> ProviderResult:
        """Normalise a webhook body the provider POSTed to us."""
