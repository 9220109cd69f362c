"""RabbitMQ: one persistent, mandatory publish per event, done when the broker confirms it.

Publisher confirms (``confirm_delivery``) make ``basic_publish`` wait for the broker's ack;
``mandatory`` makes an unroutable message come back (pika raises UnroutableError) instead
of vanishing; ``delivery_mode=2`` asks queues to keep it on disk. The connection and its
channel are kept for the endpoint's adapter and reopened on the next publish after an error.
pika's BlockingConnection is not thread-safe, so the worker's threads take turns on it (a
confirmed publish on a kept connection takes about 0.3 ms here).
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from typing import Any
from urllib.parse import unquote

import pika
from pika import exceptions as amqp
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import BaseModel, ConfigDict, field_validator

from service.events.destinations.base import (
    Failure,
    Message,
    OpenContext,
    Outcome,
)
from service.events.destinations.brokers import (
    AddressRefused,
    BrokerCredentials,
    BrokerURL,
    broker_type,
    check_template,
    checked_address,
    parse_url,
    render,
    scrub,
    transport_headers,
)

PORTS = {"amqp": 5672, "amqps": 5671}
# AMQP reply codes (spec 1.4.2): the broker's answer to a publish on a closed channel.
ACCESS_REFUSED = 403
NOT_FOUND = 404


class RabbitMQConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str  # amqp:// or amqps://, optional userinfo and vhost
    exchange: str  # "" is the default exchange, which routes to the queue named by the key
    routing_key: str = "{type}"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_url(value, PORTS)
        return value

    @field_validator("routing_key")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)


class RabbitMQ:
    """Publishes one endpoint's events; ``close()`` at worker shutdown."""

    def __init__(
        self, config: RabbitMQConfig, credentials: BrokerCredentials, context: OpenContext
    ) -> None:
        self._config = config
        self._url = parse_url(config.url, PORTS)
        self._username = credentials.username or self._url.username or "guest"
        self._password = credentials.password or self._url.password or "guest"
        self._context = context
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._lock = threading.Lock()

    def publish(self, message: Message) -> Outcome:
        with self._lock:
            return self._publish(message)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _publish(self, message: Message) -> Outcome:
        try:
            channel = self._open()
            properties = pika.BasicProperties(
                content_type=message.content_type,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=message.event_id,
                type=message.event_type,
                timestamp=int(time.time()),
                headers=transport_headers(message),
            )
            with self._deadline():
                channel.basic_publish(
                    self._config.exchange,
                    render(self._config.routing_key, message),
                    message.body,
                    properties,
                    mandatory=True,
                )
        except AddressRefused as exc:
            return exc.outcome
        except Exception as exc:  # noqa: BLE001 - pika's errors are classified at this border
            return self._failed(exc)
        # basic_publish returned: the broker confirmed (an ack, not a nack or a return).
        return Outcome.success(receipt=message.event_id)

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            # Closing a broken connection: nothing left to release.
            with contextlib.suppress(amqp.AMQPError):
                connection.close()

    @property
    def connection(self) -> pika.BlockingConnection | None:
        """The kept connection (tests check it is reused)."""
        return self._connection

    def _open(self) -> BlockingChannel:
        if self._connection is not None and self._connection.is_open:
            # Read what the broker sent while the connection sat idle (a close when it
            # restarted, a reset): a dead connection is replaced now, not found dead by the
            # publish. One non-blocking poll, a few microseconds.
            try:
                self._connection.process_data_events(time_limit=0)
            except amqp.AMQPError:
                self._drop()
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if self._connection is None or not self._connection.is_open:
            self._drop()
            self._connection = pika.BlockingConnection(self._parameters())
        channel = self._connection.channel()
        channel.confirm_delivery()
        self._channel = channel
        return channel

    def _parameters(self) -> pika.ConnectionParameters:
        url = self._url
        address = checked_address(url, self._context.addresses)
        timeout = self._context.timeout
        return pika.ConnectionParameters(
            host=str(address),  # the checked address, never the name again
            port=url.port,
            virtual_host=unquote(url.path) if url.path else "/",
            credentials=pika.PlainCredentials(self._username, self._password),
            ssl_options=_tls(url),
            connection_attempts=1,
            socket_timeout=timeout,
            stack_timeout=timeout,
            # A broker under a resource alarm blocks publishers: that is throttling.
            blocked_connection_timeout=timeout,
            client_properties={"connection_name": "genvault events"},
        )

    def _deadline(self) -> _Deadline:
        assert self._connection is not None
        return _Deadline(self._connection, self._context.timeout)

    def _failed(self, exc: Exception) -> Outcome:
        # Anything but a refused publish on a live channel: start again on the next one.
        if isinstance(exc, amqp.UnroutableError):
            reason = "unroutable: no queue is bound for routing key"
            return Outcome.failed(Failure.CONFIGURATION, f"{reason} (mandatory publish)")
        if not isinstance(exc, amqp.ChannelClosedByBroker):
            self._drop()
        error = scrub(_describe(exc, self._url, self._context.timeout), [self._password])
        return Outcome.failed(_kind(exc), error)


class _Deadline:
    """Bounds one publish: past the timeout the stream is dropped, so pika stops waiting.

    BlockingConnection waits for the confirm with no timeout of its own. Its wait loop runs
    the I/O loop's timers, and ``_terminate_stream`` is what pika's own heartbeat checker
    calls on a silent broker, so a timer that calls it ends the wait with that error.
    """

    def __init__(self, connection: pika.BlockingConnection, timeout: float) -> None:
        # Not in pika's stubs; see the class docstring.
        self._impl: Any = connection._impl  # type: ignore[attr-defined]
        self._timeout = timeout
        self._timer: object = None

    def __enter__(self) -> None:
        self._timer = self._impl._adapter_call_later(self._timeout, self._expire)

    def __exit__(self, *exc_info: object) -> None:
        self._impl._adapter_remove_timeout(self._timer)

    def _expire(self) -> None:
        self._impl._terminate_stream(_PublishTimeout(f"no confirm within {self._timeout:g} s"))


class _PublishTimeout(amqp.AMQPConnectionError):
    """The broker did not confirm within the attempt's timeout."""


def _kind(exc: Exception) -> Failure:
    if isinstance(exc, amqp.ChannelClosedByBroker):
        if exc.reply_code in {ACCESS_REFUSED, NOT_FOUND}:
            return Failure.CONFIGURATION
        return Failure.TRANSIENT
    if isinstance(exc, amqp.ProbableAuthenticationError | amqp.ProbableAccessDeniedError):
        return Failure.CONFIGURATION
    if isinstance(exc, amqp.ConnectionClosedByBroker) and exc.reply_code in {
        ACCESS_REFUSED,
        NOT_FOUND,
    }:
        return Failure.CONFIGURATION  # e.g. a vhost that does not exist
    # Refused, reset, timed out, blocked (throttled), nacked: worth the retry schedule.
    return Failure.TRANSIENT


def _describe(exc: Exception, url: BrokerURL, timeout: float) -> str:  # noqa: PLR0911 - one answer per kind
    host = url.host
    if isinstance(exc, amqp.ChannelClosedByBroker | amqp.ConnectionClosedByBroker):
        return f"broker {host!r} refused the publish: {exc.reply_code} {exc.reply_text}"
    if isinstance(exc, amqp.ProbableAuthenticationError):
        return f"broker {host!r} refused the credentials (ACCESS_REFUSED)"
    if isinstance(exc, amqp.ProbableAccessDeniedError):
        return f"broker {host!r} refused access to the virtual host"
    if isinstance(exc, amqp.ConnectionBlockedTimeout):
        return f"broker {host!r} blocked publishing (resource alarm) for {timeout:g} s"
    if isinstance(exc, amqp.NackError):
        return f"broker {host!r} nacked the publish"
    if isinstance(exc, _PublishTimeout):
        return f"broker {host!r} did not confirm within {timeout:g} s"
    if isinstance(exc, amqp.AMQPConnectionError):
        return f"cannot connect to broker {host!r}:{url.port} ({type(exc).__name__})"
    return f"publish to broker {host!r} failed: {type(exc).__name__}"


def _tls(url: BrokerURL) -> pika.SSLOptions | None:
    if not url.tls:
        return None
    # Connected to the checked IP; the certificate is still verified against the name.
    return pika.SSLOptions(ssl.create_default_context(), server_hostname=url.host)


DESTINATION = broker_type(
    "rabbitmq",
    "Publish to a RabbitMQ exchange; succeeded when the broker confirms the publish",
    RabbitMQConfig,
    RabbitMQ,
)
