"""One signed POST to an endpoint, under the same address policy as downloads.

Resolve once, check every address, connect to the checked one; connect and total time
bounded; at most 64 KB of the answer read; redirects never followed. The answer is a value,
never an exception: the delivery handler decides what it means.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from urllib3 import BaseHTTPResponse, HTTPConnectionPool, Timeout
from urllib3 import exceptions as urllib3_errors

from service.fetch.pinned import (
    NoAddresses,
    Resolver,
    checked_address,
    pinned_pool,
    retry_after_seconds,
    system_resolver,
)
from service.fetch.policy import AddressPolicy, DownloadRefused, IPAddress, Target, parse_target

MAX_RESPONSE_BYTES = 64 * 1024
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status, or an error (and maybe a Retry-After)."""

    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None


def check_address(target: Target, addresses: AddressPolicy, resolve: Resolver) -> IPAddress:
    """The one address to connect to; DownloadRefused (naming the rule) if any is refused."""
    try:
        return checked_address(target, addresses, resolve)
    except (OSError, UnicodeError, NoAddresses):
        raise DownloadRefused("unresolvable", target.host) from None


class Sender:
    def __init__(
        self,
        addresses: AddressPolicy,
        *,
        timeout: float,
        user_agent: str,
        resolver: Resolver = system_resolver,
        ca_certs: str | None = None,
    ) -> None:
        self.addresses = addresses
        self.timeout = timeout
        self.user_agent = user_agent
        self._resolve = resolver
        self._ca_certs = ca_certs

    def post(
        self,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        content_type: str = "application/json",
    ) -> Answer:
        deadline = time.monotonic() + self.timeout
        try:
            target = parse_target(url)
            address = check_address(target, self.addresses, self._resolve)
        except DownloadRefused as exc:
            return Answer(None, f"refused by the address policy ({exc.rule})")
        pool = self._pool(target, address)
        try:
            response = pool.urlopen(
                "POST",
                target.request_target,
                body=body,
                headers={
                    **{k: v for k, v in headers.items() if k.lower() != "content-type"},
                    "Host": target.host_header,
                    "Content-Type": content_type,
                    "User-Agent": self.user_agent,
                    "Accept-Encoding": "identity",
                },
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
            )
            try:
                self._drain(response, deadline)
            finally:
                response.close()
        except urllib3_errors.HTTPError as exc:
            return Answer(None, _describe(exc, target.host, self.timeout, deadline))
        finally:
            pool.close()
        status = response.status
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if 300 <= status < 400:
            return Answer(status, "redirect not followed", retry_after)
        return Answer(status, None, retry_after)

    def _pool(self, target: Target, address: IPAddress) -> HTTPConnectionPool:
        # Pinned to the checked address (fetch/pinned.py), as downloads are. total: connect
        # plus waiting for the answer stay within one timeout.
        timeout = Timeout(total=self.timeout, connect=min(CONNECT_TIMEOUT, self.timeout))
        return pinned_pool(target, address, timeout, self._ca_certs)

    def _drain(self, response: BaseHTTPResponse, deadline: float) -> None:
        """Read at most 64 KB of the answer, within the total deadline; the rest is dropped."""
        read = 0
        while read < MAX_RESPONSE_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise urllib3_errors.ReadTimeoutError(None, "", "total deadline")  # type: ignore[arg-type]
            sock = getattr(response.connection, "sock", None)
            if sock is not None:
                sock.settimeout(min(self.timeout, remaining))
            chunk = response.read1(MAX_RESPONSE_BYTES - read)
            if not chunk:
                return
            read += len(chunk)


def _describe(exc: urllib3_errors.HTTPError, host: str, timeout: float, deadline: float) -> str:
    if isinstance(exc, urllib3_errors.NewConnectionError):
        return f"cannot connect to host {host!r}"
    if isinstance(exc, urllib3_errors.TimeoutError) or time.monotonic() >= deadline:
        return f"no complete answer from host {host!r} within {timeout:g} s"
    if isinstance(exc, urllib3_errors.SSLError):
        return f"TLS with host {host!r} failed"
    return f"connection to host {host!r} failed: {type(exc).__name__}"
