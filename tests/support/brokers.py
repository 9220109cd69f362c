"""The brokers on this machine (RabbitMQ, NATS with JetStream, Redis), for destination tests.

Each fixture checks its port answers on loopback and skips with the reason when it does not,
except when GENVAULT_REQUIRE_BROKERS is set (CI), where it fails instead. A NATS server of
its own, with a password, is started from /usr/sbin/nats-server for the credentials test.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from service.events.destinations.base import OpenContext
from service.fetch.policy import AddressPolicy
from tests.support.s3 import free_port

RABBITMQ_PORT = 5672
NATS_PORT = 4222
REDIS_PORT = 6379
# The brokers run on loopback, which the production policy refuses.
LOOPBACK = AddressPolicy([ipaddress.ip_network("127.0.0.0/8")])


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_broker(name: str, port: int) -> str:
    """The broker's loopback host:port, or a skip (a failure under GENVAULT_REQUIRE_BROKERS)."""
    if not answers(port):
        reason = f"{name} does not answer on 127.0.0.1:{port}"
        if os.environ.get("GENVAULT_REQUIRE_BROKERS"):
            pytest.fail(f"brokers are required here (GENVAULT_REQUIRE_BROKERS): {reason}")
        pytest.skip(reason)
    return f"127.0.0.1:{port}"


@pytest.fixture
def rabbitmq_address() -> str:
    return require_broker("RabbitMQ", RABBITMQ_PORT)


@pytest.fixture
def nats_address() -> str:
    return require_broker("NATS", NATS_PORT)


@pytest.fixture
def redis_address() -> str:
    return require_broker("Redis", REDIS_PORT)


@pytest.fixture
def broker_context() -> OpenContext:
    return OpenContext(addresses=LOOPBACK, timeout=5.0)


@dataclass(frozen=True)
class NatsWithPassword:
    address: str
    user: str
    password: str


@pytest.fixture
def nats_with_password() -> Iterator[NatsWithPassword]:
    """A NATS server of its own that takes one user and password."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.path.exists(binary):
        reason = "nats-server is not installed"
        if os.environ.get("GENVAULT_REQUIRE_BROKERS"):
            pytest.fail(f"brokers are required here (GENVAULT_REQUIRE_BROKERS): {reason}")
        pytest.skip(reason)
    port = free_port()
    server = NatsWithPassword(f"127.0.0.1:{port}", "genvault", "right-password")
    password = ["--user", server.user, "--pass", server.password]
    with tempfile.TemporaryDirectory() as store:
        proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store, *password],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not answers(port):
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the password-protected nats-server did not start")
                time.sleep(0.05)
            yield server
        finally:
            proc.terminate()
            proc.wait(10)
