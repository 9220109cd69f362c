"""``sqs``: one SendMessage per event; success is the MessageId SQS answers.

The body is the signed body as text; message attributes carry webhook-id, -timestamp and
-signature, the event type and the content type. A FIFO queue (its URL ends in ``.fifo``)
gets MessageGroupId = the job id (the event id when there is none) and
MessageDeduplicationId = the event id, so a resend within SQS's five minutes is dropped.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from service.events.destinations import aws
from service.events.destinations.base import (
    DestinationType,
    Message,
    OpenContext,
    Outcome,
    Target,
)


class Config(aws.AwsConfigFields):
    queue_url: str = Field(
        min_length=1,
        max_length=2000,
        pattern=r"^https?://[^\x00-\x20\x7f]+$",
        description="the queue's URL, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/q",
    )


class SqsDestination:
    def __init__(self, queue_url: str, client: Any) -> None:
        self.queue_url = queue_url
        self.fifo = queue_url.rstrip("/").endswith(".fifo")
        self.client = client

    def publish(self, message: Message) -> Outcome:
        request = {"QueueUrl": self.queue_url, "MessageBody": message.body.decode()}
        return aws.send_message("SQS", self.client.send_message, request, message, fifo=self.fifo)

    def close(self) -> None:
        self.client.close()


def open_sqs(target: Target, context: OpenContext) -> SqsDestination:
    return SqsDestination(str(target.config["queue_url"]), aws.client("sqs", target, context))


DESTINATION = DestinationType(
    name="sqs",
    summary="Amazon SQS: one message per event (FIFO queues deduplicate by event id)",
    config=Config,
    credentials=aws.Credentials,
    open=open_sqs,
)
