"""Receiving a provider's webhook: verify, parse, record (jobs/ingest.py), acknowledge.

Nothing slow happens here: the job's state machine runs in the worker (jobs/applying.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service import strict_json
from service.errors import NotFound, RequestError, Unauthorized
from service.jobs import results
from service.jobs.ingest import Outcome, WebhookIngest
from service.providers.base import Provider, ProviderRejected
from service.security.tokens import verify_webhook_token


class BadCallback(RequestError):
    """The callback body is not a JSON object."""

    status = 400
    code = "bad_callback"


class CallbackTooLarge(RequestError):
    """The callback body is larger than the limit."""

    status = 413
    code = "too_large"


@dataclass
class CallbackReceiver:
    ingest: WebhookIngest
    providers: Mapping[str, Provider]
    secret: bytes

    def authenticate(self, provider: str, track_id: str, token: str | None) -> None:
        # Checked before the body is even read: an unauthenticated caller costs us nothing.
        if provider not in self.providers or not verify_webhook_token(
            self.secret, provider, track_id, token
        ):
            raise Unauthorized("invalid webhook token")

    def receive(self, provider: str, track_id: str, body: bytes) -> Outcome:
        payload = parse_body(body)
        try:
            answer = self.providers[provider].parse_callback(payload)
        except ProviderRejected as exc:
            # A provider that sends no webhooks (AI/ML API): there is nothing here to call.
            raise NotFound(exc.message) from None
        values = results.callback_values(answer, digest=results.body_digest(body))
        return self.ingest.record(provider, track_id, values)


def parse_body(body: bytes) -> dict[str, Any]:
    """The callback body as a JSON object. The one place bodies are parsed.

    BadJson (400) for malformed JSON, NaN/Infinity or nesting past the cap; BadCallback for
    valid JSON that is not an object.
    """
    payload: Any = strict_json.loads(body)
    if not isinstance(payload, dict):
        raise BadCallback()
    return payload
