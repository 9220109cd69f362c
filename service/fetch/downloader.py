"""SSRF-safe streaming downloads of provider outputs.

Each hop: normalise the URL, check the host, resolve it once, check every address, then
connect to the checked address. The body streams to a temporary file next to ``dest`` with
a byte cap, a SHA-256 and a total deadline; ``dest`` appears only when the download is whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from prometheus_client import Counter
from urllib3 import BaseHTTPResponse, HTTPConnectionPool, Timeout
from urllib3 import exceptions as urllib3_errors
from urllib3.util.ssl_match_hostname import CertificateError

from service.errors import PermanentError, TransientError
from service.fetch.pinned import (
    NoAddresses,
    Resolver,
    checked_address,
    pinned_pool,
    retry_after_seconds,
    system_resolver,
)
from service.fetch.policy import (
    AddressPolicy,
    DownloadRefused,
    HostPolicy,
    IPAddress,
    Target,
    parse_target,
)

__all__ = ["DownloadRefused", "DownloadTooLarge", "Downloaded", "Downloader", "Resolver"]

log = logging.getLogger(__name__)

DOWNLOADS = Counter("genvault_downloads_total", "Output downloads by outcome.", ["outcome"])
REFUSALS = Counter(
    "genvault_download_refusals_total", "Downloads refused by the network policy.", ["rule"]
)

CHUNK_BYTES = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Worth retrying: 404 because provider outputs may 404 until they are ready.
TRANSIENT_STATUSES = frozenset({404, 408, 429})


class DownloadTooLarge(PermanentError):
    """The download exceeds the byte cap."""

    code = "download_too_large"


@dataclass(frozen=True)
class Downloaded:
    """A completed download: where it is, how big, its SHA-256 (hex), what it said it was."""

    path: Path
    size: int
    sha256: str
    content_type: str | None
    final_url: str


class Downloader:
    """Fetches URLs under a host and address policy into files."""

    def __init__(
        self,
        *,
        hosts: HostPolicy,
        addresses: AddressPolicy,
        max_bytes: int,
        connect_timeout: float,
        read_timeout: float,
        total_timeout: float,
        max_redirects: int,
        user_agent: str = "genvault/0.1",
        resolver: Resolver = system_resolver,
        ca_certs: str | None = None,
    ) -> None:
        self.hosts = hosts
        self.addresses = addresses
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout
        self.max_redirects = max_redirects
        self.user_agent = user_agent
        self._resolve = resolver
        self._ca_certs = ca_certs

    def fetch(self, url: str, dest: Path) -> Downloaded:
        """Download ``url`` to ``dest``; raise DownloadRefused, PermanentError or TransientError."""
        partial = dest.with_name(dest.name + ".part")
        try:
            result = self._follow(url, partial, time.monotonic() + self.total_timeout)
            os.replace(partial, dest)
            result = dataclasses.replace(result, path=dest)
        except DownloadRefused as exc:
            REFUSALS.labels(rule=exc.rule).inc()
            self._failed(partial, "refused", exc)
            raise
        except DownloadTooLarge as exc:
            self._failed(partial, "too_large", exc)
            raise
        except TransientError as exc:
            self._failed(partial, "transient", exc)
            raise
        except PermanentError as exc:
            self._failed(partial, "failed", exc)
            raise
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        DOWNLOADS.labels(outcome="ok").inc()
        return result

    @staticmethod
    def _failed(partial: Path, outcome: str, exc: Exception) -> None:
        partial.unlink(missing_ok=True)
        DOWNLOADS.labels(outcome=outcome).inc()
        log.info("%s [download outcome=%s]", exc, outcome)

    def _follow(self, url: str, partial: Path, deadline: float) -> Downloaded:
        current = url
        redirects = 0
        while True:
            target = parse_target(current)
            # An address literal inside a network the operator listed is as explicit as a host
            # suffix (the sandbox, an internal MinIO); names still need the host allowlist.
            if target.ip is None or not self.addresses.admits_explicitly(target.ip):
                self.hosts.check(target)
            address = self._checked_address(target)
            pool, response = self._request(target, address, deadline)
            try:
                if response.status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if redirects == self.max_redirects:
                        raise DownloadRefused(
                            "redirect-limit", target.host, f"more than {self.max_redirects}"
                        )
                    if not location:
                        raise PermanentError(
                            f"redirect without Location from host {target.host!r}",
                            code="download_failed",
                        )
                    current = urljoin(current, location)
                    redirects += 1
                    continue
                _check_status(response.status, response.headers.get("Retry-After"), target)
                size, digest = self._stream(response, target, partial, deadline)
                return Downloaded(
                    partial, size, digest, response.headers.get("Content-Type"), current
                )
            finally:
                response.close()
                pool.close()

    def _checked_address(self, target: Target) -> IPAddress:
        """Resolve once and check every answer: one bad answer refuses the host."""
        try:
            return checked_address(target, self.addresses, self._resolve)
        except socket.gaierror as exc:
            raise _resolution_error(exc, target.host) from None
        except NoAddresses:
            raise TransientError(f"cannot resolve host {target.host!r}: no addresses") from None
        except (OSError, UnicodeError) as exc:
            raise _reason(
                TransientError(f"cannot resolve host {target.host!r}: {exc}"), "resolver"
            ) from None

    def _request(
        self, target: Target, address: IPAddress, deadline: float
    ) -> tuple[HTTPConnectionPool, BaseHTTPResponse]:
        # Pinned to the checked address (fetch/pinned.py): nothing resolves the name again.
        remaining = self._remaining(deadline, target)
        timeout = Timeout(
            connect=min(self.connect_timeout, remaining), read=min(self.read_timeout, remaining)
        )
        pool = pinned_pool(target, address, timeout, self._ca_certs)
        headers = {
            "Host": target.host_header,
            "User-Agent": self.user_agent,
            "Accept": "image/*, */*;q=0.5",
            # Raw bytes only: what we hash is what the server stored, and no decompressor
            # can inflate a small response past the byte cap.
            "Accept-Encoding": "identity",
        }
        try:
            response = pool.urlopen(
                "GET",
                target.request_target,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
            )
        except urllib3_errors.HTTPError as exc:
            pool.close()
            raise _translate(exc, target) from None
        except BaseException:
            pool.close()
            raise
        return pool, response

    def _stream(
        self, response: BaseHTTPResponse, target: Target, partial: Path, deadline: float
    ) -> tuple[int, str]:
        declared = _content_length(response.headers.get("Content-Length"))
        if declared is not None and declared > self.max_bytes:
            raise DownloadTooLarge(
                f"host {target.host!r} announced {declared} bytes > {self.max_bytes}"
            )
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as out:
                while True:
                    self._arm_read_timeout(response, deadline, target)
                    # read1 returns after one socket read, so the deadline is checked even
                    # when a server trickles bytes just inside the read timeout.
                    chunk = response.read1(CHUNK_BYTES)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise DownloadTooLarge(
                            f"host {target.host!r} sent more than {self.max_bytes} bytes"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except urllib3_errors.HTTPError as exc:
            # urllib3 wraps socket timeouts and resets met while reading in its own errors;
            # a read cut short by the shrunken timeout is the deadline's doing.
            self._remaining(deadline, target)
            raise _translate(exc, target) from None
        return size, digest.hexdigest()

    def _arm_read_timeout(
        self, response: BaseHTTPResponse, deadline: float, target: Target
    ) -> None:
        """Shrink the socket timeout so the next read cannot outlive the total deadline."""
        remaining = self._remaining(deadline, target)
        connection = response.connection
        sock = getattr(connection, "sock", None) if connection is not None else None
        if sock is not None:
            sock.settimeout(min(self.read_timeout, remaining))

    def _remaining(self, deadline: float, target: Target) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _reason(
                TransientError(
                    f"download from host {target.host!r} exceeded {self.total_timeout:g} s"
                ),
                "timeout",
            )
        return remaining


# The resolver's "this name does not exist" answers: asking again gives the same answer.
# EAI_AGAIN (a resolver timeout or SERVFAIL) and the rest stay transient.
_NO_SUCH_NAME = frozenset(
    code
    for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None))
    if code is not None
)


def _resolution_error(exc: socket.gaierror, host: str) -> Exception:
    if exc.errno in _NO_SUCH_NAME:
        return _reason(
            PermanentError(f"host {host!r} does not exist", code="download_failed"),
            "no_such_host",
        )
    return _reason(TransientError(f"cannot resolve host {host!r}: {exc}"), "resolver")


def _reason(exc: PermanentError | TransientError, reason: str) -> PermanentError | TransientError:
    exc.reason = reason
    return exc


def _check_status(status: int, retry_after: str | None, target: Target) -> None:
    if status == 200:
        return
    message = f"host {target.host!r} answered HTTP {status}"
    if status in TRANSIENT_STATUSES or status >= 500:
        raise _reason(
            TransientError(message, retry_after=retry_after_seconds(retry_after)), f"http_{status}"
        )
    raise _reason(PermanentError(message, code="download_failed"), f"http_{status}")


def _translate(exc: urllib3_errors.HTTPError, target: Target) -> Exception:
    """urllib3's errors as ours: TLS verification is permanent, the rest transient."""
    host = target.host
    # Before the timeout check: NewConnectionError subclasses ConnectTimeoutError in urllib3.
    if isinstance(exc, urllib3_errors.NewConnectionError):
        return TransientError(f"cannot connect to host {host!r}: {exc.__class__.__name__}")
    if isinstance(exc, urllib3_errors.TimeoutError):
        return _reason(TransientError(f"timed out talking to host {host!r}"), "timeout")
    if isinstance(exc, urllib3_errors.SSLError):
        if exc.args and isinstance(exc.args[0], (ssl.SSLCertVerificationError, CertificateError)):
            # A certificate that does not match the name will not start matching on a
            # retry, and retrying a possible interception buys nothing.
            return PermanentError(
                f"TLS verification failed for host {host!r}", code="download_failed"
            )
        return TransientError(f"TLS handshake with host {host!r} failed")
    if isinstance(exc, urllib3_errors.ProtocolError):
        return TransientError(f"connection to host {host!r} broke: {type(exc).__name__}")
    return TransientError(f"cannot connect to host {host!r}: {type(exc).__name__}")


def _content_length(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)
