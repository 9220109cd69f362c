"""``eventbridge``: one PutEvents entry per event on a bus.

Source ``genvault``, DetailType the event type, and Detail this envelope (EventBridge has no
headers, and its detail must be a JSON object)::

    {"headers": {"webhook-id": ..., "webhook-timestamp": ..., "webhook-signature": ...,
                 "content-type": ...},
     "body": {...the event body as a JSON object, for rules to match on...},
     "raw": "...the exact signed body as a string..."}

A consumer verifies ``raw`` with ``headers`` (the stock standardwebhooks library), as
EventBridge may reformat ``body``. PutEvents answers 200 even when an entry failed: success
is ``FailedEntryCount`` 0, and a failed entry's ErrorCode is classified like an error.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from service.events.destinations import aws
from service.events.destinations.base import (
    DestinationType,
    Failure,
    Message,
    OpenContext,
    Outcome,
    Target,
)

SOURCE = "genvault"


class Config(aws.AwsConfigFields):
    event_bus_name: str = Field(
        min_length=1,
        max_length=1600,
        pattern=r"^[A-Za-z0-9/_.:-]+$",
        description="the bus's name or ARN (\"default\" for the account's default bus)",
    )


def envelope(message: Message) -> str:
    headers = {k: message.headers[k] for k in ("webhook-id", "webhook-timestamp")}
    headers["webhook-signature"] = message.headers["webhook-signature"]
    headers["content-type"] = message.content_type
    raw = message.body.decode()
    return json.dumps({"headers": headers, "body": json.loads(raw), "raw": raw})


class EventBridgeDestination:
    def __init__(self, bus: str, client: Any) -> None:
        self.bus = bus
        self.client = client

    def publish(self, message: Message) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        entry = {
            "Source": SOURCE,
            "DetailType": message.event_type,
            "Detail": envelope(message),
            "EventBusName": self.bus,
        }
        try:
            answer = self.client.put_events(Entries=[entry])
        except (BotoCoreError, ClientError) as exc:
            return aws.failed(exc)
        entries = answer.get("Entries") or [{}]
        if answer.get("FailedEntryCount", 0) != 0 or not entries[0].get("EventId"):
            code = str(entries[0].get("ErrorCode") or "")
            text = f"entry refused: {code}: {entries[0].get('ErrorMessage') or ''}"
            failure = aws.classify(code) if code else Failure.TRANSIENT
            return Outcome.failed(failure, text[:300])
        return Outcome.success(receipt=str(entries[0]["EventId"]))

    def close(self) -> None:
        self.client.close()


def open_eventbridge(target: Target, context: OpenContext) -> EventBridgeDestination:
    bus = str(target.config["event_bus_name"])
    return EventBridgeDestination(bus, aws.client("events", target, context))


DESTINATION = DestinationType(
    name="eventbridge",
    summary="Amazon EventBridge: one entry per event (Source genvault, DetailType the type)",
    config=Config,
    credentials=aws.Credentials,
    open=open_eventbridge,
)
