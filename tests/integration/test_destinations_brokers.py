"""The broker adapters against the real RabbitMQ, NATS JetStream and Redis on this machine.

Each message carries a real Standard Webhooks signature and is consumed back from the
broker and verified with the stock ``standardwebhooks`` package, from the transport's own
headers. Every failure ends in a failed Outcome of the right kind, never in success.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pika
import pytest
import redis as redis_client
from pydantic import ValidationError
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from service.app import create_app
from service.db.migrate import upgrade
from service.db.models import DeliveryAttempt, EventDelivery
from service.events import signing
from service.events.destinations import nats as nats_destination
from service.events.destinations import rabbitmq as rabbitmq_destination
from service.events.destinations import redis as redis_destination
from service.events.destinations.base import (
    Destination,
    DestinationType,
    Failure,
    Message,
    OpenContext,
    Target,
)
from service.fetch.policy import AddressPolicy
from service.jobs.states import JobStatus
from service.wiring import Container, build
from tests.integration.test_events import EVENT_SETTINGS, drain, move, new_job
from tests.support.app import AUTH, make_settings
from tests.support.brokers import LOOPBACK, NatsWithPassword, require_broker
from tests.support.db import sqlite_url
from tests.support.s3 import free_port
from tests.support.tcpproxy import TcpProxy

SECRET = signing.new_secret()


def make_message(event_id: str | None = None, event_type: str = "job.archived") -> Message:
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    body = json.dumps(
        {"type": event_type, "timestamp": "2026-12-06T12:00:00Z", "data": {"job_id": "job_1"}}
    ).encode()
    headers = {
        **signing.headers([SECRET], event_id, body),
        "content-type": "application/json",
    }
    return Message(event_id, event_type, "p1", "job_1", body, headers)


def verified(body: bytes, headers: Mapping[str, Any]) -> Any:
    """The body as the stock library parses it, after checking the transport's signature."""
    text = {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in headers.items()}
    return Webhook(SECRET).verify(body, text)


def open_destination(
    kind: DestinationType,
    config: dict[str, Any],
    context: OpenContext,
    credentials: dict[str, str] | None = None,
) -> Destination:
    return kind.open(Target("ep_test", kind.name, config, credentials or {}), context)


# -- RabbitMQ --------------------------------------------------------------------------------


@dataclass
class Rabbit:
    channel: Any  # pika's BlockingChannel, consuming side
    exchange: str  # a topic exchange with one queue (same name) bound to p1.job.*

    def config(self, port: int = 5672, **overrides: str) -> dict[str, Any]:
        return {
            "url": f"amqp://127.0.0.1:{port}",
            "exchange": self.exchange,
            "routing_key": "{project}.{type}",
            **overrides,
        }


@pytest.fixture
def rabbit(rabbitmq_address: str) -> Iterator[Rabbit]:
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    channel = connection.channel()
    name = f"genvault-test-{uuid.uuid4().hex[:12]}"
    channel.exchange_declare(name, "topic")
    channel.queue_declare(name)
    channel.queue_bind(name, name, routing_key="p1.job.*")
    try:
        yield Rabbit(channel, name)
    finally:
        channel.queue_delete(name)
        channel.exchange_delete(name)
        connection.close()


def test_rabbitmq_publish_is_confirmed_persistent_and_verifiable(
    rabbit: Rabbit, broker_context: OpenContext
) -> None:
    destination = open_destination(
        rabbitmq_destination.DESTINATION, rabbit.config(), broker_context
    )
    message = make_message()
    try:
        outcome = destination.publish(message)
    finally:
        destination.close()
    assert outcome.ok, outcome
    _, properties, body = rabbit.channel.basic_get(rabbit.exchange, auto_ack=True)
    assert body == message.body
    assert properties.message_id == message.event_id
    assert properties.delivery_mode == 2
    assert properties.content_type == "application/json"
    assert properties.headers["type"] == "job.archived"
    assert properties.headers["webhook-id"] == message.event_id
    assert verified(body, properties.headers)["data"]["job_id"] == "job_1"


def test_rabbitmq_unroutable_missing_exchange_and_wrong_password_are_configuration_errors(
    rabbit: Rabbit, broker_context: OpenContext
) -> None:
    kind = rabbitmq_destination.DESTINATION
    unroutable = open_destination(kind, rabbit.config(routing_key="nobody.{type}"), broker_context)
    missing = open_destination(
        kind, rabbit.config(exchange=f"{rabbit.exchange}-gone"), broker_context
    )
    refused = open_destination(
        kind, rabbit.config(), broker_context, {"username": "guest", "password": "wrong-secret"}
    )
    try:
        outcomes = {
            "unroutable": unroutable.publish(make_message()),
            "404": missing.publish(make_message()),
            "ACCESS_REFUSED": refused.publish(make_message()),
        }
    finally:
        for destination in (unroutable, missing, refused):
            destination.close()
    for expected, outcome in outcomes.items():
        assert not outcome.ok
        assert outcome.failure is Failure.CONFIGURATION, outcome
        assert expected in (outcome.error or ""), outcome
        assert "wrong-secret" not in (outcome.error or "")


# -- NATS JetStream ----------------------------------------------------------------------------


@dataclass
class Stream:
    name: str
    prefix: str  # the stream takes <prefix>.>


async def _jetstream(action: Callable[[Any], Any]) -> Any:
    client = await nats.connect("nats://127.0.0.1:4222")
    try:
        return await action(client.jetstream())
    finally:
        await client.close()


@pytest.fixture
def stream(nats_address: str) -> Iterator[Stream]:
    token = uuid.uuid4().hex[:12]
    created = Stream(f"GENVAULT_TEST_{token}", f"genvault-test-{token}")
    asyncio.run(
        _jetstream(lambda js: js.add_stream(name=created.name, subjects=[f"{created.prefix}.>"]))
    )
    try:
        yield created
    finally:
        asyncio.run(_jetstream(lambda js: js.delete_stream(created.name)))


def test_nats_publish_is_acked_deduplicated_and_verifiable(
    stream: Stream, broker_context: OpenContext
) -> None:
    destination = open_destination(
        nats_destination.DESTINATION,
        {"url": "nats://127.0.0.1:4222", "subject": f"{stream.prefix}.{{project}}.{{type}}"},
        broker_context,
    )
    message = make_message()
    try:
        first = destination.publish(message)
        again = destination.publish(message)  # a retried attempt: same event id
    finally:
        destination.close()
    assert first.ok, first
    assert first.receipt == f"{stream.name}:1"
    assert again.ok, again
    assert again.receipt == f"{stream.name}:1 duplicate"  # PubAck duplicate=True
    info = asyncio.run(_jetstream(lambda js: js.stream_info(stream.name)))
    assert info.state.messages == 1
    stored = asyncio.run(_jetstream(lambda js: js.get_msg(stream.name, 1)))
    assert stored.subject == f"{stream.prefix}.p1.job.archived"
    assert stored.headers["Nats-Msg-Id"] == message.event_id
    assert stored.headers["type"] == "job.archived"
    assert verified(stored.data, stored.headers)["type"] == "job.archived"


def test_nats_no_stream_and_wrong_password_are_configuration_errors(
    nats_address: str, nats_with_password: NatsWithPassword, broker_context: OpenContext
) -> None:
    kind = nats_destination.DESTINATION
    server = nats_with_password
    no_stream = open_destination(
        kind, {"url": f"nats://{nats_address}", "subject": "genvault-nobody.{type}"}, broker_context
    )
    wrong = open_destination(
        kind,
        {"url": f"nats://{server.user}:wrong-secret@{server.address}", "subject": "x.{type}"},
        broker_context,
    )
    right = open_destination(
        kind,
        {"url": f"nats://{server.address}", "subject": "x.{type}"},
        broker_context,
        {"username": server.user, "password": server.password},
    )
    try:
        missing, refused, admitted = (d.publish(make_message()) for d in (no_stream, wrong, right))
    finally:
        for destination in (no_stream, wrong, right):
            destination.close()
    for outcome in (missing, refused, admitted):
        assert not outcome.ok
        assert outcome.failure is Failure.CONFIGURATION, outcome
    assert "no responders" in (missing.error or "")
    assert "refused the credentials" in (refused.error or "")
    assert "wrong-secret" not in (refused.error or "")
    # The right password gets past authorization, to the missing stream.
    assert "no responders" in (admitted.error or ""), admitted


# -- Redis Streams -----------------------------------------------------------------------------


@pytest.fixture
def redis_stream(redis_address: str) -> Iterator[tuple[redis_client.Redis, str]]:
    client = redis_client.Redis(host="127.0.0.1", port=6379)
    key = f"genvault-test-{uuid.uuid4().hex[:12]}"
    try:
        yield client, key
    finally:
        client.delete(key)
        client.close()


def test_redis_xadd_returns_the_entry_and_is_verifiable(
    redis_stream: tuple[redis_client.Redis, str], broker_context: OpenContext
) -> None:
    client, key = redis_stream
    destination = open_destination(
        redis_destination.DESTINATION,
        {"url": "redis://127.0.0.1:6379/0", "stream": key, "maxlen": 1000},
        broker_context,
    )
    message = make_message()
    try:
        outcome = destination.publish(message)
    finally:
        destination.close()
    assert outcome.ok, outcome
    [(entry_id, fields)] = client.xrange(key)
    assert entry_id.decode() == outcome.receipt
    body = fields.pop(b"body")
    assert body == message.body
    assert fields[b"type"] == b"job.archived"
    assert fields[b"content-type"] == b"application/json"
    assert fields[b"webhook-id"] == message.event_id.encode()
    assert verified(body, {k.decode(): v for k, v in fields.items()})["data"]["job_id"] == "job_1"


def test_redis_wrong_type_and_wrong_password_are_configuration_errors(
    redis_stream: tuple[redis_client.Redis, str], broker_context: OpenContext
) -> None:
    client, key = redis_stream
    client.set(key, "not a stream")
    user = f"genvault-test-{uuid.uuid4().hex[:8]}"
    client.execute_command("ACL", "SETUSER", user, "on", ">right-password", "~*", "+@all")
    kind = redis_destination.DESTINATION
    wrong_type = open_destination(kind, {"url": "redis://127.0.0.1", "stream": key}, broker_context)
    refused = open_destination(
        kind,
        {"url": "redis://127.0.0.1", "stream": key},
        broker_context,
        {"username": user, "password": "wrong-secret"},
    )
    try:
        outcomes = [wrong_type.publish(make_message()), refused.publish(make_message())]
    finally:
        client.execute_command("ACL", "DELUSER", user)
        wrong_type.close()
        refused.close()
    for outcome in outcomes:
        assert not outcome.ok
        assert outcome.failure is Failure.CONFIGURATION, outcome
        assert "wrong-secret" not in (outcome.error or "")
    assert "WRONGTYPE" in (outcomes[0].error or "")
    assert "refused the credentials" in (outcomes[1].error or "")


# -- Every broker type: the network side ------------------------------------------------------


@dataclass
class Case:
    kind: DestinationType
    port: int  # the real broker's
    config: Callable[[int], dict[str, Any]]  # for a broker on this port


def _case(name: str, request: pytest.FixtureRequest) -> Case:
    if name == "rabbitmq":
        rabbit: Rabbit = request.getfixturevalue("rabbit")
        return Case(rabbitmq_destination.DESTINATION, 5672, rabbit.config)
    if name == "nats":
        stream: Stream = request.getfixturevalue("stream")
        subject = f"{stream.prefix}.{{type}}"
        return Case(
            nats_destination.DESTINATION,
            4222,
            lambda port: {"url": f"nats://127.0.0.1:{port}", "subject": subject},
        )
    require_broker("Redis", 6379)
    key = f"genvault-test-{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: redis_client.Redis(port=6379).delete(key))
    return Case(
        redis_destination.DESTINATION,
        6379,
        lambda port: {"url": f"redis://127.0.0.1:{port}", "stream": key},
    )


BROKERS = ["rabbitmq", "nats", "redis"]


@pytest.mark.parametrize("name", BROKERS)
def test_closed_port_is_transient(name: str, request: pytest.FixtureRequest) -> None:
    case = _case(name, request)
    destination = open_destination(case.kind, case.config(free_port()), OpenContext(LOOPBACK, 2.0))
    started = time.monotonic()
    try:
        outcome = destination.publish(make_message())
    finally:
        destination.close()
    assert not outcome.ok
    assert outcome.failure is Failure.TRANSIENT, outcome
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("name", BROKERS)
def test_address_policy_refuses_loopback(name: str, request: pytest.FixtureRequest) -> None:
    case = _case(name, request)
    config = case.config(case.port)
    config["url"] = config["url"].replace("127.0.0.1", "localhost")
    destination = open_destination(case.kind, config, OpenContext(AddressPolicy(), 2.0))
    outcome = destination.publish(make_message())
    destination.close()
    assert not outcome.ok
    assert outcome.failure is Failure.CONFIGURATION, outcome
    assert "refused by the loopback rule" in (outcome.error or "")


def _connection(destination: Destination) -> object:
    return getattr(destination, "connection", None) or getattr(destination, "client", None)


@pytest.mark.parametrize("name", BROKERS)
def test_connection_is_kept_and_reopened_after_the_broker_drops_it(
    name: str, request: pytest.FixtureRequest
) -> None:
    case = _case(name, request)
    with TcpProxy("127.0.0.1", case.port) as proxy:
        destination = open_destination(
            case.kind, case.config(proxy.port), OpenContext(LOOPBACK, 3.0)
        )
        try:
            assert destination.publish(make_message()).ok
            kept = _connection(destination)
            assert kept is not None
            assert destination.publish(make_message()).ok
            assert _connection(destination) is kept  # no new connection per event

            proxy.refuse()  # every connection reset, the port closed: the broker is down
            down = destination.publish(make_message())
            assert not down.ok
            assert down.failure is Failure.TRANSIENT, down

            proxy.heal()  # back up: the next publish connects again
            again = destination.publish(make_message())
            assert again.ok, again
            assert _connection(destination) is not kept
        finally:
            destination.close()


@pytest.mark.parametrize("name", BROKERS)
def test_the_worker_threads_share_one_adapter(name: str, request: pytest.FixtureRequest) -> None:
    case = _case(name, request)
    destination = open_destination(case.kind, case.config(case.port), OpenContext(LOOPBACK, 5.0))
    try:
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda _: destination.publish(make_message()), range(64)))
        assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok][:3]
        assert len({o.receipt for o in outcomes}) == 64
    finally:
        destination.close()


@pytest.mark.parametrize("name", BROKERS)
def test_a_broker_restart_between_publishes_costs_no_event(
    name: str, request: pytest.FixtureRequest
) -> None:
    case = _case(name, request)
    with TcpProxy("127.0.0.1", case.port) as proxy:
        destination = open_destination(
            case.kind, case.config(proxy.port), OpenContext(LOOPBACK, 3.0)
        )
        try:
            assert destination.publish(make_message()).ok
            kept = _connection(destination)
            proxy.refuse()  # the kept connection is reset while idle...
            proxy.heal()  # ...and the broker is back before the next event
            outcome = destination.publish(make_message())
            assert outcome.ok, outcome
            if name != "redis":  # redis-py reconnects inside the kept client
                assert _connection(destination) is not kept
        finally:
            destination.close()


@pytest.mark.parametrize("name", BROKERS)
def test_a_silent_broker_is_transient_within_the_timeout(
    name: str, request: pytest.FixtureRequest
) -> None:
    case = _case(name, request)
    with TcpProxy("127.0.0.1", case.port) as proxy:
        destination = open_destination(
            case.kind, case.config(proxy.port), OpenContext(LOOPBACK, 1.0)
        )
        try:
            assert destination.publish(make_message()).ok
            proxy.hang()  # connected, and nothing comes back
            started = time.monotonic()
            outcome = destination.publish(make_message())
            took = time.monotonic() - started
            proxy.heal()
        finally:
            destination.close()
    assert not outcome.ok
    assert outcome.failure is Failure.TRANSIENT, outcome
    assert took < 2.5


@pytest.mark.parametrize(
    ("kind", "config"),
    [
        (rabbitmq_destination.DESTINATION, {"url": "http://h", "exchange": "x"}),
        (rabbitmq_destination.DESTINATION, {"url": "amqp://h", "exchange": "x", "queue": "q"}),
        (
            rabbitmq_destination.DESTINATION,
            {"url": "amqp://h", "exchange": "x", "routing_key": "{job}"},
        ),
        (nats_destination.DESTINATION, {"url": "nats://h", "subject": "a.{type"}),
        (redis_destination.DESTINATION, {"url": "redis://h/x", "stream": "s"}),
        (redis_destination.DESTINATION, {"url": "redis://h", "stream": "s", "maxlen": 0}),
        (redis_destination.DESTINATION, {"url": "redis://h", "stream": ""}),
    ],
)
def test_config_is_validated(kind: DestinationType, config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        kind.config.model_validate(config)


# -- Through the real delivery task ---------------------------------------------------------


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    # SQLite only: what is under test is the broker side, the same on either database.
    c = build(make_settings(sqlite_url(tmp_path), tmp_path, **EVENT_SETTINGS))
    upgrade(c.db.engine)
    try:
        yield c
    finally:
        c.close()


def _deliver(container: Container, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Register an endpoint through the API, archive a job, run the worker until done."""
    api = create_app(container=container).test_client()
    r = api.post("/v1/endpoints", json={**body, "event_types": ["job.archived"]}, headers=AUTH)
    assert r.status_code == 201, r.get_json()
    job_id = new_job(container)
    move(container, job_id, JobStatus.SUBMITTED, JobStatus.PROCESSING, JobStatus.ARCHIVING)
    move(container, job_id, JobStatus.ARCHIVED)
    drain(container)
    shown = api.get(f"/v1/endpoints/{r.get_json()['id']}", headers=AUTH).get_json()
    return {**r.get_json(), **shown}, job_id


def _attempts(container: Container, endpoint_id: str) -> tuple[str, list[DeliveryAttempt]]:
    with container.db.transaction() as session:
        [delivery] = session.execute(
            select(EventDelivery).where(EventDelivery.endpoint_id == endpoint_id)
        ).scalars()
        tried = list(
            session.execute(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery.id)
                .order_by(DeliveryAttempt.id)
            ).scalars()
        )
        session.expunge_all()
    return delivery.status, tried


def test_the_delivery_task_publishes_to_rabbitmq(container: Container, rabbit: Rabbit) -> None:
    rabbit.channel.queue_bind(rabbit.exchange, rabbit.exchange, routing_key="*.job.archived")
    endpoint, job_id = _deliver(container, {"type": "rabbitmq", "config": rabbit.config()})
    _, properties, body = rabbit.channel.basic_get(rabbit.exchange, auto_ack=True)
    event = Webhook(endpoint["secret"]).verify(body, _text(properties.headers))
    assert event["data"]["id"] == job_id
    status, [attempt] = _attempts(container, endpoint["id"])
    assert status == "succeeded"
    assert attempt.receipt == properties.message_id == properties.headers["webhook-id"]


def test_the_delivery_task_publishes_to_nats(container: Container, stream: Stream) -> None:
    config = {"url": "nats://127.0.0.1:4222", "subject": f"{stream.prefix}.{{type}}"}
    endpoint, job_id = _deliver(container, {"type": "nats", "config": config})
    stored = asyncio.run(_jetstream(lambda js: js.get_msg(stream.name, 1)))
    event = Webhook(endpoint["secret"]).verify(stored.data, stored.headers)
    assert event["data"]["id"] == job_id
    status, [attempt] = _attempts(container, endpoint["id"])
    assert status == "succeeded"
    assert attempt.receipt == f"{stream.name}:1"
    assert stored.headers["Nats-Msg-Id"] == stored.headers["webhook-id"]


def test_the_delivery_task_publishes_to_redis(
    container: Container, redis_stream: tuple[redis_client.Redis, str]
) -> None:
    client, key = redis_stream
    config = {"url": "redis://127.0.0.1:6379", "stream": key, "maxlen": 1000}
    endpoint, job_id = _deliver(container, {"type": "redis", "config": config})
    [(entry_id, fields)] = client.xrange(key)
    text = _text(fields)
    event = Webhook(endpoint["secret"]).verify(text.pop("body"), text)
    assert event["data"]["id"] == job_id
    status, [attempt] = _attempts(container, endpoint["id"])
    assert status == "succeeded"
    assert attempt.receipt == entry_id.decode()


@pytest.mark.parametrize("name", BROKERS)
def test_a_misconfigured_broker_endpoint_fails_and_is_disabled(
    name: str, container: Container, request: pytest.FixtureRequest
) -> None:
    case = _case(name, request)
    config = case.config(case.port)
    if name == "rabbitmq":
        config["exchange"] += "-gone"  # a missing exchange
    elif name == "nats":
        config["subject"] = f"genvault-nobody-{uuid.uuid4().hex[:8]}.{{type}}"  # no stream
    else:
        redis_client.Redis(port=6379).set(config["stream"], "not a stream")
    endpoint, _ = _deliver(container, {"type": name, "config": config})
    status, tried = _attempts(container, endpoint["id"])
    assert status == "failed"
    assert len(tried) == 3
    assert all(a.receipt is None for a in tried)
    assert all((a.error or "").startswith("configuration") for a in tried), [a.error for a in tried]
    assert endpoint["enabled"] is False


@pytest.mark.parametrize("name", BROKERS)
def test_a_broker_endpoint_on_a_closed_port_is_retried_and_stays_on(
    name: str, container: Container, request: pytest.FixtureRequest
) -> None:
    case = _case(name, request)
    endpoint, _ = _deliver(container, {"type": name, "config": case.config(free_port())})
    status, tried = _attempts(container, endpoint["id"])
    assert status == "failed"  # the (short) schedule ran out
    assert len(tried) == 3
    assert not any((a.error or "").startswith("configuration") for a in tried)
    assert endpoint["enabled"] is True


def _text(headers: Mapping[Any, Any]) -> dict[str, str]:
    def s(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    return {s(k): s(v) for k, v in headers.items()}
