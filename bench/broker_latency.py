"""Broker rows of bench/events_latency.py: the adapter's publish -> confirm, beside the raw client.

For each broker type on this machine (RabbitMQ, NATS JetStream, Redis) and in the same run:
the raw client's own round trip on a kept connection (pika publish + confirm, nats-py
``js.publish`` awaited on its own loop, redis-py XADD), then the genvault adapter's
``publish()`` (address check on connect, headers, confirm, classification, and for NATS the
hop onto the background event loop) on its kept connection. Both use the same signed message
size. A broker whose port does not answer is reported and skipped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import pika
import redis

from service.events import signing
from service.events.destinations import nats as nats_destination
from service.events.destinations import rabbitmq as rabbitmq_destination
from service.events.destinations import redis as redis_destination
from service.events.destinations.base import Message, OpenContext, Target
from service.fetch.policy import AddressPolicy
from tests.support.brokers import answers

CONTEXT = OpenContext(AddressPolicy([ipaddress.ip_network("127.0.0.0/8")]), 5.0)
SECRET = signing.new_secret()


def message() -> Message:
    event_id = f"evt_{uuid.uuid4().hex}"
    body = json.dumps(
        {"type": "job.archived", "timestamp": "2026-12-06T12:00:00Z", "data": {"job_id": "j"}}
    ).encode()
    headers = {**signing.headers([SECRET], event_id, body), "content-type": "application/json"}
    return Message(event_id, "job.archived", "bench", "j", body, headers)


def timed(n: int, call: Callable[[], Any]) -> list[float]:
    ms = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def _adapter(kind: Any, config: dict[str, Any], n: int) -> list[float]:
    destination = kind.open(Target("ep_bench", kind.name, config), CONTEXT)
    try:
        assert destination.publish(message()).ok  # connect outside the measurement
        out = []
        for _ in range(n):
            m = message()
            t0 = time.perf_counter()
            outcome = destination.publish(m)
            out.append((time.perf_counter() - t0) * 1000)
            assert outcome.ok, outcome
        return out
    finally:
        destination.close()


def rabbitmq(n: int) -> tuple[list[float], list[float]]:
    name = f"genvault-bench-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    channel = connection.channel()
    channel.exchange_declare(name, "topic")
    channel.queue_declare(name)
    channel.queue_bind(name, name, routing_key="#")
    channel.confirm_delivery()
    body = message().body
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    try:
        raw = timed(n, lambda: channel.basic_publish(name, "job.archived", body, props, True))
        config = {"url": "amqp://127.0.0.1:5672", "exchange": name}
        adapter = _adapter(rabbitmq_destination.DESTINATION, config, n)
    finally:
        channel.queue_delete(name)
        channel.exchange_delete(name)
        connection.close()
    return raw, adapter


def nats_js(n: int) -> tuple[list[float], list[float]]:
    token = uuid.uuid4().hex[:8]
    stream, prefix = f"GENVAULT_BENCH_{token}", f"genvault-bench-{token}"

    async def raw_rounds() -> list[float]:
        client = await nats.connect("nats://127.0.0.1:4222")
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
        out = []
        for _ in range(n):
            m = message()
            t0 = time.perf_counter()
            await js.publish(f"{prefix}.x", m.body, headers={"Nats-Msg-Id": m.event_id})
            out.append((time.perf_counter() - t0) * 1000)
        await client.close()
        return out

    async def drop() -> None:
        client = await nats.connect("nats://127.0.0.1:4222")
        await client.jetstream().delete_stream(stream)
        await client.close()

    try:
        raw = asyncio.run(raw_rounds())
        config = {"url": "nats://127.0.0.1:4222", "subject": f"{prefix}.{{type}}"}
        adapter = _adapter(nats_destination.DESTINATION, config, n)
    finally:
        asyncio.run(drop())
    return raw, adapter


def redis_stream(n: int) -> tuple[list[float], list[float]]:
    key = f"genvault-bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379)
    body = message().body
    try:
        raw = timed(n, lambda: client.xadd(key, {"body": body}))
        config = {"url": "redis://127.0.0.1:6379", "stream": key}
        adapter = _adapter(redis_destination.DESTINATION, config, n)
    finally:
        client.delete(key)
        client.close()
    return raw, adapter


BROKERS: dict[str, tuple[int, Callable[[int], tuple[list[float], list[float]]]]] = {
    "rabbitmq": (5672, rabbitmq),
    "nats": (4222, nats_js),
    "redis": (6379, redis_stream),
}


def round_trips(n: int) -> dict[str, tuple[list[float], list[float]]]:
    """For each broker that answers: (raw client round trips, adapter round trips) in ms."""
    found = {}
    for name, (port, run) in BROKERS.items():
        if answers(port):
            found[name] = run(n)
        else:
            print(f"  {name}: nothing answers on 127.0.0.1:{port}, skipped")
    return found


# -- Through the whole pipeline: an endpoint of each broker type, and a consumer on it --------


@dataclass
class Got:
    wall: float  # time.time() when the consumer had it
    body: bytes
    headers: dict[str, str]


@dataclass
class Consumer:
    """One broker endpoint's config and what its consumer saw (in a thread of its own)."""

    type: str
    config: dict[str, Any]
    stop: Callable[[], None]
    got: list[Got] = field(default_factory=list)
    secret: str | None = None


def _text(headers: Any) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in (headers or {}).items()
    }


def rabbitmq_consumer() -> Consumer:
    name = f"genvault-bench-{uuid.uuid4().hex[:8]}"
    ready = threading.Event()
    holder: dict[str, Any] = {}
    consumer = Consumer(
        "rabbitmq", {"url": "amqp://127.0.0.1:5672", "exchange": name}, lambda: None
    )

    def run() -> None:
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
        channel = connection.channel()
        channel.exchange_declare(name, "topic")
        channel.queue_declare(name, auto_delete=True)
        channel.queue_bind(name, name, routing_key="#")

        def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
            consumer.got.append(Got(time.time(), body, _text(props.headers)))
            ch.basic_ack(method.delivery_tag)

        channel.basic_consume(name, on_message)
        holder["stop"] = lambda: connection.add_callback_threadsafe(channel.stop_consuming)
        ready.set()
        channel.start_consuming()
        channel.exchange_delete(name)
        connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)

    def stop() -> None:
        holder["stop"]()
        thread.join(10)

    consumer.stop = stop
    return consumer


def nats_consumer() -> Consumer:
    token = uuid.uuid4().hex[:8]
    stream, prefix = f"GENVAULT_BENCH_{token}", f"genvault-bench-{token}"
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    consumer = Consumer(
        "nats", {"url": "nats://127.0.0.1:4222", "subject": f"{prefix}.{{type}}"}, lambda: None
    )

    async def start() -> Any:
        client = await nats.connect("nats://127.0.0.1:4222")
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{prefix}.>"])

        async def on_message(msg: Any) -> None:
            consumer.got.append(Got(time.time(), msg.data, _text(msg.headers)))

        # A push consumer on the stream: a message is seen once JetStream has stored it.
        subscription = await js.subscribe(f"{prefix}.>", cb=on_message, ordered_consumer=True)
        return client, subscription

    client, subscription = asyncio.run_coroutine_threadsafe(start(), loop).result(10)

    async def finish() -> None:
        await subscription.unsubscribe()
        await client.jetstream().delete_stream(stream)
        await client.close()

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(finish(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)

    consumer.stop = stop
    return consumer


def redis_consumer() -> Consumer:
    key = f"genvault-bench-{uuid.uuid4().hex[:8]}"
    done = threading.Event()
    consumer = Consumer("redis", {"url": "redis://127.0.0.1:6379", "stream": key}, lambda: None)

    def run() -> None:
        client = redis.Redis(host="127.0.0.1", port=6379)
        last = "0"
        while not done.is_set():
            for _, entries in client.xread({key: last}, block=200) or []:
                for entry_id, fields in entries:
                    last = entry_id
                    text = _text(fields)
                    body = fields[b"body"]
                    consumer.got.append(Got(time.time(), body, text))
        client.delete(key)
        client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop() -> None:
        done.set()
        thread.join(10)

    consumer.stop = stop
    return consumer


CONSUMERS: dict[str, tuple[int, Callable[[], Consumer]]] = {
    "rabbitmq": (5672, rabbitmq_consumer),
    "nats": (4222, nats_consumer),
    "redis": (6379, redis_consumer),
}


def start_consumers() -> list[Consumer]:
    return [start() for port, start in CONSUMERS.values() if answers(port)]
