"""``http``: today's signed POST (service.events.sender), as a destination.

A 2xx is a success; 410 Gone disables the endpoint at once; anything else (another status, a
timeout, a refused connection, the address policy) is retried on the schedule.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.events.destinations.base import (
    DestinationType,
    Failure,
    Message,
    OpenContext,
    Outcome,
    Target,
)
from service.events.sender import Sender


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, description="http or https URL")


class HttpDestination:
    def __init__(self, url: str, sender: Sender) -> None:
        self.url = url
        self.sender = sender

    def publish(self, message: Message) -> Outcome:
        answer = self.sender.post(
            self.url, message.headers, message.body, content_type=message.content_type
        )
        if answer.ok:
            return Outcome.success(status=answer.status)
        error = answer.error or f"HTTP {answer.status} is not a success"
        failure = Failure.GONE if answer.status == 410 else Failure.TRANSIENT
        return Outcome.failed(failure, error, status=answer.status, retry_after=answer.retry_after)

    def close(self) -> None:
        """Nothing kept: each POST pins its own connection to the checked address."""


def open_http(target: Target, context: OpenContext) -> HttpDestination:
    sender = Sender(context.addresses, timeout=context.timeout, user_agent=context.user_agent)
    return HttpDestination(str(target.config["url"]), sender)


DESTINATION = DestinationType(
    name="http",
    summary="a signed POST to an HTTP endpoint (Standard Webhooks)",
    config=Config,
    credentials=None,
    open=open_http,
)
