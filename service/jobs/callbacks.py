"""Receiving a provider's webhook: verify, record, acknowledge. Nothing slow happens here."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.api import json_body
from service.db.session import Database
from service.errors import NotFound, RequestError, Unauthorized
from service.jobs import records, results
from service.providers.base import Provider
from service.providers.endpoints import get_endpoint
from service.security.tokens import verify_webhook_token
from service.tasks.queue import TaskQueue


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


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
    db: Database
    queue: TaskQueue
    providers: Mapping[str, Provider]
    secret: bytes
    timing: results.PollTiming

    def authenticate(self, provider: str, track_id: str, token: str | None) -> None:
        # Checked before the body is even read: an unauthenticated caller costs us nothing.
        if provider not in self.providers or not verify_webhook_token(
            self.secret, provider, track_id, token
        ):
            raise Unauthorized("invalid webhook token")

    def receive(self, provider: str, track_id: str, body: bytes) -> Outcome:
        payload: Any = json_body.loads(body)  # BadJson (400) for NaN, deep nesting, bad JSON
        if not isinstance(payload, dict):
            raise BadCallback()
        answer = self.providers[provider].parse_callback(payload)
        with self.db.transaction() as session:
            job = records.get_job_by_track_id(session, track_id, for_update=True)
            if get_endpoint(job.endpoint).provider != provider:
                raise NotFound("unknown track_id")
            callback_id = results.store(
                session, job, answer, source="webhook", digest=results.body_digest(body)
            )
            if callback_id is None:
                return Outcome.DUPLICATE
            results.apply(session, self.queue, job, answer, callback_id, timing=self.timing)
        return Outcome.ACCEPTED
