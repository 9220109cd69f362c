"""What SQS, SNS and EventBridge share: config fields, credentials, the client, error kinds.

The only modules besides storage/s3.py that import boto3 (the vendor border). A client is
made once per endpoint and kept by ``Destinations`` for the life of the worker process;
botocore retries nothing (the events retry schedule does), and its timeouts are the events
timeout. Without credentials the default chain applies (environment, instance or pod role).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.events.destinations.base import (
    Failure,
    Message,
    OpenContext,
    Outcome,
    Target,
    check_url,
)

_REGION = r"^[a-z]{2}(-[a-z0-9]+)+-\d+$"

# AWS error codes that no retry will fix: a missing queue, topic or bus, refused credentials.
CONFIGURATION_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "NonExistentQueue",
        "NotFound",
        "NotFoundException",
        "ResourceNotFoundException",
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "NotAuthorizedForSourceException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSNotFoundException",
        "InvalidParameterValue",
        "InvalidParameter",
        "MalformedDetail",
        "InvalidArgument",
        "InvalidAddress",
    }
)

_THROTTLING = re.compile(r"throttl|toomanyrequests|requestlimitexceeded|slowdown", re.I)

# One lock around client creation: boto3's default session is not safe to share while
# clients are being made from several threads.
_CLIENTS = threading.Lock()


class AwsConfigFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = Field(pattern=_REGION, max_length=40, description="e.g. eu-west-1")
    endpoint_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=r"^https?://[^\x00-\x20\x7f]+$",
        description="another endpoint (a VPC endpoint, LocalStack); checked by the address "
        "policy like HTTP endpoint URLs",
    )


class Credentials(BaseModel):
    """Static keys; leave them out to use the default chain (instance or pod role)."""

    model_config = ConfigDict(extra="forbid")

    access_key_id: str = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9]+$")
    secret_access_key: str = Field(min_length=1, max_length=256)


def client(service: str, target: Target, context: OpenContext) -> Any:
    """A botocore client for one endpoint; DownloadRefused when its endpoint_url is refused."""
    import boto3
    from botocore.config import Config as BotoConfig

    endpoint_url = target.config.get("endpoint_url")
    if endpoint_url:
        check_url(context.addresses, str(endpoint_url))
    creds: Mapping[str, str] = target.credentials
    settings = BotoConfig(
        connect_timeout=min(5.0, context.timeout),
        read_timeout=context.timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},
        user_agent_extra=context.user_agent,
    )
    with _CLIENTS:
        session = boto3.session.Session(
            aws_access_key_id=creds.get("access_key_id"),
            aws_secret_access_key=creds.get("secret_access_key"),
            region_name=str(target.config["region"]),
        )
        make: Any = session.client  # the stubs know only literal service names
        return make(service, endpoint_url=endpoint_url or None, config=settings)


def attributes(message: Message) -> dict[str, dict[str, str]]:
    """SQS and SNS message attributes: the Standard Webhooks headers, event and content type."""
    values = {
        "webhook-id": message.headers["webhook-id"],
        "webhook-timestamp": message.headers["webhook-timestamp"],
        "webhook-signature": message.headers["webhook-signature"],
        "event-type": message.event_type,
        "content-type": message.content_type,
    }
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


def group_id(message: Message) -> str:
    """FIFO order is per job: its events arrive in the order they happened."""
    return message.job_id or message.event_id


def send_message(
    service: str, call: Any, request: dict[str, Any], message: Message, *, fifo: bool
) -> Outcome:
    """One SQS SendMessage or SNS Publish: the event's attributes (and on a FIFO queue or
    topic its group and dedupe ids) added to ``request``; success is a MessageId."""
    from botocore.exceptions import BotoCoreError, ClientError

    request = {**request, "MessageAttributes": attributes(message)}
    if fifo:
        request["MessageGroupId"] = group_id(message)
        request["MessageDeduplicationId"] = message.event_id
    try:
        answer = call(**request)
    except (BotoCoreError, ClientError) as exc:
        return failed(exc)
    receipt = answer.get("MessageId")
    if not receipt:
        return Outcome.failed(Failure.TRANSIENT, f"{service} answered without a MessageId")
    return Outcome.success(receipt=str(receipt))


def failed(exc: Exception) -> Outcome:
    """A botocore error as an outcome: configuration, or transient (the schedule retries)."""
    from botocore import exceptions as boto_errors

    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = _short(f"{code}: {error.get('Message', '')}")
        return Outcome.failed(classify(code, status), text, status=None)
    if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
        return Outcome.failed(Failure.CONFIGURATION, "no AWS credentials found")
    if isinstance(exc, boto_errors.ParamValidationError):
        return Outcome.failed(Failure.CONFIGURATION, _short(f"invalid request: {exc}"))
    if isinstance(exc, boto_errors.ConnectTimeoutError | boto_errors.ReadTimeoutError):
        return Outcome.failed(Failure.TRANSIENT, "no answer from AWS within the timeout")
    if isinstance(exc, boto_errors.EndpointConnectionError | boto_errors.ConnectionError):
        return Outcome.failed(Failure.TRANSIENT, f"cannot connect to AWS: {type(exc).__name__}")
    return Outcome.failed(Failure.TRANSIENT, f"AWS call failed: {type(exc).__name__}")


def classify(code: str, status: int | None = None) -> Failure:
    if _THROTTLING.search(code) or (status is not None and status >= 500):
        return Failure.TRANSIENT
    if code in CONFIGURATION_CODES:
        return Failure.CONFIGURATION
    return Failure.TRANSIENT


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:297] + "..."
