"""One signed POST to an endpoint, under the same address policy as downloads.

Resolve once, check every address, connect to the checked one; connect and total time
bounded; at most 64 KB of the answer read; redirects never followed. The answer is a value,
never an exception: the delivery handler decides what it means.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from urllib3 import BaseHTTPResponse, HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3 import exceptions as urllib3_errors

from service.fetch.downloader import Resolver, system_resolver
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
    if target.ip is not None:
        addresses.check(target.ip, target.host)
        return target.ip
    try:
        found = resolve(target.host, target.port)
    except (OSError, UnicodeError):
        raise DownloadRefused("unresolvable", target.host) from None
    if not found:
        raise DownloadRefused("unresolvable", target.host)
    for ip in found:
        addresses.check(ip, target.host)
    return found[0]


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

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> Answer:
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
                    **headers,
                    "Host": target.host_header,
                    "Content-Type": "application/json",
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
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if 300 <= status < 400:
            return Answer(status, "redirect not followed", retry_after)
        return Answer(status, None, retry_after)

    def _pool(self, target: Target, address: IPAddress) -> HTTPConnectionPool:
        # Built for the checked address, never the name, so nothing resolves it again; TLS
        # still verifies the certificate for the name (as in fetch.downloader).
        # total: connect plus waiting for the answer stay within one timeout.
        timeout = Timeout(total=self.timeout, connect=min(CONNECT_TIMEOUT, self.timeout))
        if target.scheme == "https":
            return HTTPSConnectionPool(
                str(address),
                target.port,
                timeout=timeout,
                retries=False,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self._ca_certs,
                assert_hostname=target.host,
                server_hostname=target.host if target.ip is None else None,
            )
        return HTTPConnectionPool(str(address), target.port, timeout=timeout, retries=False)

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


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds or as an HTTP date; None when absent or unreadable."""
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
