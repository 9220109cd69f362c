"""Connections pinned to a checked address: resolve once, check every answer, connect there.

Shared by the downloader (provider outputs, job inputs) and the event sender (endpoints):
whatever genvault fetches from or posts to on the internet goes through these two steps, so
a rebinding DNS answer can never pick the address after the policy approved another.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout

from service.fetch.policy import AddressPolicy, IPAddress, Target

Resolver = Callable[[str, int], Sequence[IPAddress]]


class NoAddresses(Exception):
    """The resolver answered, with no address at all."""


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for ``host`` (one lookup)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def checked_address(target: Target, addresses: AddressPolicy, resolve: Resolver) -> IPAddress:
    """The one address to connect to: every answer checked, the first one used.

    DownloadRefused (naming the rule) if any answer is refused; the resolver's own errors
    and NoAddresses go to the caller, which knows whether they are worth a retry.
    """
    if target.ip is not None:
        addresses.check(target.ip, target.host)
        return target.ip
    found = resolve(target.host, target.port)
    if not found:
        raise NoAddresses(target.host)
    for address in found:
        addresses.check(address, target.host)
    # The first answer, as a client would pick it; no fallback, so every address we might
    # connect to has been checked above and none comes from a second lookup.
    return found[0]


def pinned_pool(
    target: Target, address: IPAddress, timeout: Timeout, ca_certs: str | None
) -> HTTPConnectionPool:
    """A connection pool for ``address`` that speaks to ``target``'s host.

    Built for the checked IP, never for the name, so urllib3 cannot resolve again. TLS still
    sends SNI for and verifies the certificate against the name: server_hostname and
    assert_hostname are urllib3's documented knobs for exactly this. urllib3 directly (not
    requests) also means no proxy from the environment can reroute the request.
    """
    if target.scheme == "https":
        return HTTPSConnectionPool(
            str(address),
            target.port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
            assert_hostname=target.host,
            server_hostname=target.host if target.ip is None else None,
        )
    return HTTPConnectionPool(str(address), target.port, timeout=timeout, retries=False)


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (delay-seconds or an HTTP date); None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
