"""Which URLs, hosts and addresses a download may reach (the SSRF policy).

Three steps, each refusing with a :class:`DownloadRefused` that names its rule:
:func:`parse_target` normalises a URL the way the connection will use it,
:class:`HostPolicy` admits host names, :class:`AddressPolicy` admits resolved addresses.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from service.errors import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {"http": 80, "https": 443}

# Whitespace, controls and backslashes: parsers disagree about them (a browser reads "\" as
# "/"), and no provider URL contains them, so refusing is simpler than picking a reading.
_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
# WHATWG URL: a host whose last label is a number is an IPv4 address or nothing.
_NUMERIC_LABEL = re.compile(r"^([0-9]+|0x[0-9a-f]*)$")


class DownloadRefused(PermanentError):
    """The download was refused by the network policy."""

    code = "download_refused"

    def __init__(self, rule: str, host: str, detail: str = "") -> None:
        self.rule = rule
        self.host = host
        # Name the host only: the rest of a URL may carry signed tokens.
        suffix = f": {detail}" if detail else ""
        super().__init__(f"download refused ({rule}) for host {host!r}{suffix}")


@dataclass(frozen=True)
class Target:
    """A URL reduced to what a request needs, with the host in canonical form.

    ``host`` is lowercase ASCII without a trailing dot; for an IP literal it is the
    address's canonical text and ``ip`` is set.
    """

    scheme: str
    host: str
    port: int
    ip: IPAddress | None
    request_target: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


def parse_target(url: str) -> Target:
    """Normalise ``url`` or refuse it (scheme, userinfo, malformed host or port)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise DownloadRefused("malformed-url", "?") from None
    scheme = parts.scheme.lower()
    raw_host = (parts.hostname or "").rstrip(".")
    if scheme not in DEFAULT_PORTS:
        raise DownloadRefused("scheme", raw_host or "?", f"scheme {scheme or 'none'!r}")
    if _UNSAFE_URL_CHARS.search(url):
        raise DownloadRefused("malformed-url", raw_host or "?", "whitespace or backslash")
    if "@" in parts.netloc:
        # "https://trusted.example@evil.example/" reads as trusted to a human.
        raise DownloadRefused("userinfo", raw_host or "?")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise DownloadRefused("malformed-url", raw_host or "?", "bad port") from None
    host, ip = _normalise_host(raw_host, bracketed=parts.netloc.startswith("["))
    path = parts.path or "/"
    request_target = f"{path}?{parts.query}" if parts.query else path
    return Target(scheme, host, port, ip, request_target)


def _normalise_host(raw: str, *, bracketed: bool) -> tuple[str, IPAddress | None]:
    if not raw:
        raise DownloadRefused("malformed-url", "?", "no host")
    if bracketed:
        if "%" in raw:
            raise DownloadRefused("ipv6-zone-id", raw)
        try:
            ip6 = ipaddress.IPv6Address(raw)
        except ValueError:
            raise DownloadRefused("malformed-host", raw) from None
        return str(ip6), ip6
    host = raw.lower()
    if not host.isascii():
        try:
            # UTS 46 mapping also folds look-alikes such as full-width digits, which is
            # why the result goes through the IP-literal check below like any other host.
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise DownloadRefused(
                "malformed-host", raw.encode("ascii", "replace").decode()
            ) from None
    if not _HOST_NAME.match(host):
        raise DownloadRefused("malformed-host", host)
    if _NUMERIC_LABEL.match(host.rsplit(".", 1)[-1]):
        try:
            # inet_aton is what libc (and so curl, wget, getaddrinfo) accepts: "2130706433",
            # "0177.0.0.1", "0x7f.1" and "127.1" all mean 127.0.0.1.
            ip4 = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise DownloadRefused("malformed-host", host) from None
        return str(ip4), ip4
    return host, None


class HostPolicy:
    """Admits host names by suffix; IP literals only when listed literally.

    ``"example.com"`` admits ``example.com`` and ``cdn.example.com``, not
    ``badexample.com``. ``"*"`` admits every host (the address policy still applies).
    """

    def __init__(self, allowed_suffixes: Sequence[str]) -> None:
        cleaned = {s.strip().lower().strip(".") for s in allowed_suffixes if s.strip()}
        self._any = "*" in cleaned
        self._ips: set[IPAddress] = set()
        self._suffixes: list[str] = []
        for entry in cleaned - {"*"}:
            try:
                self._ips.add(ipaddress.ip_address(entry.strip("[]")))
            except ValueError:
                self._suffixes.append(entry)

    def allows(self, target: Target) -> bool:
        if self._any:
            return True
        if target.ip is not None:
            return target.ip in self._ips
        host = target.host
        return any(host == s or host.endswith("." + s) for s in self._suffixes)

    def check(self, target: Target) -> None:
        if not self.allows(target):
            raise DownloadRefused("host-not-allowed", target.host)


def _in(*cidrs: str) -> Callable[[IPAddress], bool]:
    networks = [ipaddress.ip_network(c) for c in cidrs]
    return lambda ip: any(ip in net for net in networks)


def _embeds_ipv4_compatible(ip: IPAddress) -> bool:
    # ::a.b.c.d (deprecated); :: and ::1 are caught earlier as unspecified and loopback.
    return isinstance(ip, ipaddress.IPv6Address) and int(ip) >> 32 == 0


# First match names the rule. Embedded-IPv4 forms come first so that they are refused
# as what they are, whatever the embedded address: a gateway may translate them.
_RULES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("ipv4-mapped", _in("::ffff:0:0/96")),
    ("ipv4-translated", _in("::ffff:0:0:0/96")),
    ("nat64", _in("64:ff9b::/96", "64:ff9b:1::/48")),
    ("6to4", _in("2002::/16", "192.88.99.0/24")),
    ("teredo", _in("2001::/32")),
    ("unspecified", _in("0.0.0.0/8", "::/128")),
    ("loopback", lambda ip: ip.is_loopback),
    ("ipv4-compatible", _embeds_ipv4_compatible),
    ("cloud-metadata", _in("169.254.169.254/32", "169.254.170.2/32", "fd00:ec2::254/128")),
    ("link-local", lambda ip: ip.is_link_local),
    ("private-address", _in("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    ("cgnat", _in("100.64.0.0/10")),
    ("multicast", lambda ip: ip.is_multicast),
    ("broadcast", _in("255.255.255.255/32")),
    ("site-local", _in("fec0::/10")),
    (
        "documentation",
        _in("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"),
    ),
    ("benchmark", _in("198.18.0.0/15", "2001:2::/48")),
    ("special-purpose", _in("192.0.0.0/24")),  # IETF protocol assignments, never a CDN
    ("reserved", lambda ip: ip.is_reserved),
    ("not-global", lambda ip: not ip.is_global),
)


class AddressPolicy:
    """Refuses every address that is not plainly public, unless an allowed network holds it."""

    def __init__(self, allowed_networks: Sequence[IPNetwork] = ()) -> None:
        self._allowed = tuple(allowed_networks)

    def admits_explicitly(self, ip: IPAddress) -> bool:
        """Whether an operator-listed network (GENVAULT_DOWNLOAD_ALLOWED_NETWORKS) holds ``ip``."""
        return any(ip in net for net in self._allowed)

    def refusal(self, ip: IPAddress) -> str | None:
        """The rule that refuses ``ip``, or None if it may be reached."""
        # Containment never crosses versions, so 127.0.0.0/8 does not admit ::ffff:127.0.0.1.
        if self.admits_explicitly(ip):
            return None
        for rule, matches in _RULES:
            if matches(ip):
                return rule
        return None

    def check(self, ip: IPAddress, host: str | None = None) -> None:
        rule = self.refusal(ip)
        if rule is not None:
            raise DownloadRefused(rule, host or str(ip), f"address {ip}")
