"""NATS JetStream: one publish per event, done when JetStream answers with a PubAck.

``Nats-Msg-Id`` is the event id, so the stream drops a redelivered event inside its
duplicate window (the PubAck then says ``duplicate``). nats-py is asyncio: one event loop
runs in a background thread per worker process, each endpoint's connection lives on it, and
the worker's threads hand it their publishes (concurrent on the one connection), each
bounded by the attempt's timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import PubAck
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

PORTS = {"nats": 4222, "tls": 4222}
T = TypeVar("T")
log = logging.getLogger(__name__)


class NatsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str  # nats:// or tls://, optional userinfo
    subject: str  # e.g. "genvault.{project}.{type}"; a JetStream stream must cover it

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parse_url(value, PORTS)
        return value

    @field_validator("subject")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)


class _Loop:
    """The worker process's one asyncio loop for NATS, started on first use."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            # A forked worker inherits the parent's loop object but not its thread.
            if cls._loop is None or cls._pid != os.getpid():
                loop = asyncio.new_event_loop()
                loop.set_exception_handler(_quiet)
                threading.Thread(target=loop.run_forever, name="nats-loop", daemon=True).start()
                cls._loop, cls._pid = loop, os.getpid()
            return cls._loop


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # What nats-py's tasks leave behind on a reset connection ("Task exception was never
    # retrieved", "Task was destroyed but it is pending"): the publish already said it.
    log.debug("nats loop: %s", context.get("message"))


def run(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run ``coro`` on the NATS loop from a worker thread; TimeoutError past ``timeout``."""
    future = asyncio.run_coroutine_threadsafe(coro, _Loop.get())
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimeoutError from None


class Nats:
    """Publishes one endpoint's events; ``close()`` at worker shutdown."""

    def __init__(
        self, config: NatsConfig, credentials: BrokerCredentials, context: OpenContext
    ) -> None:
        self._config = config
        self._url = parse_url(config.url, PORTS)
        self._username = credentials.username or self._url.username
        self._password = credentials.password or self._url.password
        self._context = context
        self._client: Client | None = None  # touched on the loop's thread only
        # Done once _client's connection is lost: nats-py's reading task (it ends on a reset
        # even when nats-py's own close then fails before calling closed_cb), or closed_cb.
        self._lost: set[asyncio.Future[Any]] = set()
        self._connecting: asyncio.Lock | None = None  # made on the loop, at first use

    def publish(self, message: Message) -> Outcome:
        timeout = self._context.timeout
        try:
            return run(self._publish(message), timeout)
        except TimeoutError:
            self.close()  # a half-done connect or publish: start clean next time
            return Outcome.failed(
                Failure.TRANSIENT, f"no PubAck from {self._url.host!r} within {timeout:g} s"
            )

    def close(self) -> None:
        if self._client is None:
            return
        # On a timeout, the loop is a daemon thread: a connection that will not close dies
        # with the process.
        with contextlib.suppress(TimeoutError):
            run(self._close(), self._context.timeout)

    @property
    def client(self) -> Client | None:
        """The kept connection (tests check it is reused)."""
        return self._client

    async def _publish(self, message: Message) -> Outcome:
        for last_try in (False, True):
            kept = self._client is not None and self._client.is_connected
            try:
                ack = await self._send(message)
            except AddressRefused as exc:
                return exc.outcome
            except Exception as exc:  # noqa: BLE001 - nats-py's errors are classified here
                answered = isinstance(exc, nats.js.errors.Error | nats.errors.NoRespondersError)
                if not answered:
                    await self._close()
                # A kept connection that died while idle (a server restart) is seen only
                # now: once more on a new one. Nats-Msg-Id makes a repeat harmless.
                lost = not answered and not isinstance(exc, asyncio.TimeoutError)
                if kept and lost and not last_try:
                    continue
                error = scrub(_describe(exc, self._url, self._context.timeout), [self._password])
                return Outcome.failed(_kind(exc), error)
            receipt = f"{ack.stream}:{ack.seq}" + (" duplicate" if ack.duplicate else "")
            return Outcome.success(receipt=receipt)
        raise AssertionError("unreachable: the last try returns")

    async def _send(self, message: Message) -> PubAck:
        client = await self._connected()
        js = client.jetstream(timeout=self._context.timeout)
        publish = asyncio.ensure_future(
            js.publish(
                render(self._config.subject, message),
                message.body,
                timeout=self._context.timeout,
                headers={**transport_headers(message), "Nats-Msg-Id": message.event_id},
            )
        )
        # nats-py leaves a request waiting for its whole timeout when the connection closes
        # under it (a reset it had not read yet): stop waiting when the connection is lost.
        await asyncio.wait({publish, *self._lost}, return_when=asyncio.FIRST_COMPLETED)
        if publish.done():
            return publish.result()
        publish.cancel()
        raise ConnectionResetError("connection lost before the PubAck")

    async def _connected(self) -> Client:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent publishes make one connection, not several
            return await self._connect()

    async def _connect(self) -> Client:
        alive = not any(f.done() for f in self._lost)
        if self._client is not None and self._client.is_connected and alive:
            return self._client
        await self._close()
        url = self._url
        address = checked_address(url, self._context.addresses)
        host = f"[{address}]" if address.version == 6 else str(address)
        errors: list[Exception] = []

        async def remember(exc: Exception) -> None:
            errors.append(exc)  # instead of nats-py logging each one

        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        async def on_closed() -> None:
            if not lost.done():
                lost.set_result(None)

        client = Client()
        try:
            await client.connect(
                servers=[f"nats://{host}:{url.port}"],  # the checked address
                tls=ssl.create_default_context() if url.tls else None,
                tls_hostname=url.host if url.tls else None,
                user=self._username,
                password=self._password,
                name="genvault events",
                connect_timeout=max(1, round(self._context.timeout)),
                # Reconnects are this adapter's job, on the next publish, under the policy.
                # nats-py retries a refused first connect forever unless the attempts are
                # capped (0 means no cap there): 1 gives up after a second, immediate try.
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=remember,
                disconnected_cb=on_closed,
                closed_cb=on_closed,
            )
        except BaseException as exc:
            # A failed connect leaves its transport open: close it, or it leaks a socket.
            with contextlib.suppress(Exception):
                await client.close()
            if isinstance(exc, nats.errors.NoServersError):
                # nats-py says "no servers"; the reason (refused, authorization) went to
                # error_cb: raise that one so it is classified.
                raise (errors[-1] if errors else ConnectionRefusedError()) from None
            raise
        # Not public in nats-py: the task that reads the socket (None if that ever changes).
        reader: asyncio.Task[Any] | None = getattr(client, "_reading_task", None)
        self._client, self._lost = client, {lost} | ({reader} if reader is not None else set())
        return client

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            # Closing a broken connection: nothing left to release, whatever nats-py says.
            with contextlib.suppress(Exception):
                await client.close()


def _kind(exc: Exception) -> Failure:
    if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError):
        return Failure.CONFIGURATION  # no stream listens on the subject
    if isinstance(exc, nats.js.errors.ServiceUnavailableError):
        return Failure.TRANSIENT  # JetStream itself not ready (e.g. no leader)
    if isinstance(exc, nats.js.errors.APIError):
        return Failure.CONFIGURATION  # a stream that refuses the message (e.g. bad request)
    if isinstance(exc, nats.errors.AuthorizationError | nats.errors.BadSubjectError):
        return Failure.CONFIGURATION
    if _authorization(exc):
        return Failure.CONFIGURATION
    return Failure.TRANSIENT  # refused, reset, timed out, slow: worth the retry schedule


def _authorization(exc: Exception) -> bool:
    text = str(exc).lower()
    return "authorization" in text or "authentication" in text or "permissions" in text


def _describe(exc: Exception, url: BrokerURL, timeout: float) -> str:
    host = url.host
    if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError):
        return f"no JetStream stream on {host!r} takes this subject (no responders)"
    if isinstance(exc, nats.js.errors.APIError):
        return f"JetStream on {host!r} refused the publish: {exc.code} {exc.description}"
    if isinstance(exc, nats.errors.AuthorizationError) or _authorization(exc):
        return f"server {host!r} refused the credentials (authorization violation)"
    if isinstance(exc, nats.errors.TimeoutError | asyncio.TimeoutError):
        return f"no PubAck from {host!r} within {timeout:g} s"
    if isinstance(exc, OSError | nats.errors.NoServersError):
        return f"cannot connect to server {host!r}:{url.port} ({type(exc).__name__})"
    return f"publish to server {host!r} failed: {type(exc).__name__}"


DESTINATION = broker_type(
    "nats",
    "Publish to NATS JetStream; succeeded on the PubAck (Nats-Msg-Id = event id)",
    NatsConfig,
    Nats,
)
