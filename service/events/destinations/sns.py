"""``sns``: one Publish per event; success is the MessageId SNS answers.

The same message attributes as SQS (subscribe a queue with raw message delivery to receive
them as its own attributes). A FIFO topic (``.fifo``) gets the same group and dedupe ids.
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
    topic_arn: str = Field(
        min_length=1,
        max_length=300,
        pattern=r"^arn:[a-z-]+:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$",
        description="the topic's ARN, e.g. arn:aws:sns:eu-west-1:123456789012:genvault",
    )


class SnsDestination:
    def __init__(self, topic_arn: str, client: Any) -> None:
        self.topic_arn = topic_arn
        self.fifo = topic_arn.endswith(".fifo")
        self.client = client

    def publish(self, message: Message) -> Outcome:
        request = {"TopicArn": self.topic_arn, "Message": message.body.decode()}
        return aws.send_message("SNS", self.client.publish, request, message, fifo=self.fifo)

    def close(self) -> None:
        self.client.close()


def open_sns(target: Target, context: OpenContext) -> SnsDestination:
    return SnsDestination(str(target.config["topic_arn"]), aws.client("sns", target, context))


DESTINATION = DestinationType(
    name="sns",
    summary="Amazon SNS: one Publish per event to a topic",
    config=Config,
    credentials=aws.Credentials,
    open=open_sns,
)
