"""The downloader against real HTTP servers on loopback, and a table of SSRF attacks.

Only 127.0.0.1 is an allowed network. A second server on 127.0.0.2 and a third on ::1 are
"legitimate but not allowed": they must never see a request. An audit hook records every
socket connect and name lookup made while a test runs, and refuses any connect to an
address other than 127.0.0.1, so no test can send traffic anywhere else even if the code
under test were wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import socket
import ssl
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from prometheus_client import REGISTRY

from service.config import Settings
from service.errors import PermanentError, TransientError
from service.fetch.downloader import Downloaded, Downloader, DownloadTooLarge
from service.fetch.pinned import Resolver, system_resolver
from service.fetch.policy import AddressPolicy, DownloadRefused, HostPolicy, IPAddress
from service.wiring import build_downloader
from tests.support import badfiles

PNG = badfiles.image_bytes("PNG", 48, 32)
MAX_BYTES = 256 * 1024
ANY = ("*",)
NAMES = ("images.test",)

# ---------------------------------------------------------------------------- servers


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TestServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self.server.hits.append((self.path, dict(self.headers)))
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        route = ROUTES.get(parts.path)
        if route is None and parts.path.startswith("/chain/"):
            route = _chain
        if route is None and parts.path.startswith("/status/"):
            route = _status
        # The client hanging up mid-body is what several tests are about.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            (route or _not_found)(self, query)

    def send(self, status: int, body: bytes = b"", **headers: str) -> None:
        """Answer with ``body``; keyword headers use "_" for "-" (Content_Type=...)."""
        fields = {name.replace("_", "-"): value for name, value in headers.items()}
        fields.setdefault("Content-Type", "application/octet-stream")
        fields.setdefault("Content-Length", str(len(body)))
        self.send_response(status)
        for name, value in fields.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _image(h: Handler, q: dict[str, str]) -> None:
    h.send(200, PNG, Content_Type="image/png")


def _redirect(h: Handler, q: dict[str, str]) -> None:
    h.send(int(q.get("status", "302")), Location=q["to"])


def _chain(h: Handler, q: dict[str, str]) -> None:
    n = int(h.path.rsplit("/", 1)[1])
    h.send(302, Location="/img.png" if n == 0 else f"/chain/{n - 1}")


def _status(h: Handler, q: dict[str, str]) -> None:
    h.send(int(h.path.rsplit("/", 1)[1]), b"no", Retry_After="7")


def _not_found(h: Handler, q: dict[str, str]) -> None:
    h.send(404, b"<html>not found</html>", Content_Type="text/html")


def _big(h: Handler, total: int, chunked: bool, **headers: str) -> None:
    h.send_response(200)
    for name, value in headers.items():
        h.send_header(name.replace("_", "-"), value)
    if chunked:
        h.send_header("Transfer-Encoding", "chunked")
    else:
        h.send_header("Connection", "close")
    h.end_headers()
    block = b"\x00" * 65536
    for _ in range(total // len(block)):
        h.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
    if chunked:
        h.wfile.write(b"0\r\n\r\n")
    h.close_connection = True


ROUTES: dict[str, Callable[[Handler, dict[str, str]], None]] = {
    "/img.png": _image,
    "/redirect": _redirect,
    "/dir/rel": lambda h, q: h.send(302, Location="../img.png"),
    "/abs-path": lambda h, q: h.send(301, Location="/img.png"),
    "/scheme-relative": lambda h, q: h.send(307, Location=f"//{h.headers['Host']}/img.png"),
    "/loop": lambda h, q: h.send(302, Location="/loop"),
    "/no-location": lambda h, q: h.send(302),
    "/html": lambda h, q: h.send(200, b"<html></html>", Content_Type="text/html"),
    "/announced-huge": lambda h, q: h.send(200, Content_Length=str(10**9)),
    "/no-length": lambda h, q: _big(h, 8 * MAX_BYTES, chunked=False),
    # Content-Length says 10 while a chunked body goes on for megabytes.
    "/lying-chunked": lambda h, q: _big(h, 8 * MAX_BYTES, chunked=True, Content_Length="10"),
    # Content-Length says 10 and a megabyte follows on the same connection.
    "/lying-raw": lambda h, q: _big(h, 16 * 65536, chunked=False, Content_Length="10"),
    "/large": lambda h, q: _big(h, int(q["bytes"]), chunked=False),
    "/stall": lambda h, q: _stall(h),
    "/trickle": lambda h, q: _trickle(h),
}


def _stall(h: Handler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "100")
    h.end_headers()
    h.wfile.write(b"x")
    h.wfile.flush()
    h.server.stop.wait(3)


def _trickle(h: Handler) -> None:
    # One byte every 0.1 s: each read is well inside the read timeout, the total is not.
    h.send_response(200)
    h.send_header("Content-Length", "100")
    h.end_headers()
    for _ in range(100):
        if h.server.stop.wait(0.1):
            return
        h.wfile.write(b"x")
        h.wfile.flush()


class TestServer(ThreadingHTTPServer):
    __test__ = False  # not a pytest class
    daemon_threads = True

    def __init__(self, host: str, ssl_context: ssl.SSLContext | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, 0), Handler)
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.stop = threading.Event()
        self.port = int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-response is expected here


@pytest.fixture(scope="module")
def serve() -> Iterator[Callable[..., TestServer]]:
    started: list[TestServer] = []

    def start(host: str, ssl_context: ssl.SSLContext | None = None) -> TestServer:
        server = TestServer(host, ssl_context)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop.set()
        server.shutdown()
        server.server_close()


@dataclass
class Servers:
    allowed: TestServer
    other: TestServer  # on 127.0.0.2: real, reachable, and not allowed
    v6: TestServer  # on ::1

    def fill(self, template: str) -> str:
        return template.format(a=self.allowed.port, b=self.other.port, v6=self.v6.port)


@pytest.fixture(scope="module")
def servers(serve: Callable[..., TestServer]) -> Servers:
    return Servers(serve("127.0.0.1"), serve("127.0.0.2"), serve("::1"))


# ---------------------------------------------------------------------------- guard


@dataclass
class NetLog:
    connects: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)


_watching: NetLog | None = None
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    log = _watching
    if log is None:
        return
    if event == "socket.connect" and isinstance(args[1], tuple):
        host, port = str(args[1][0]), int(args[1][1])
        log.connects.append((host, port))
        if host != "127.0.0.1":
            raise RuntimeError(f"test tried to connect to {host} port {port}")
    elif event == "socket.getaddrinfo":
        log.lookups.append(str(args[0]))


@pytest.fixture
def net() -> Iterator[NetLog]:
    """What the test connected to and looked up; connecting beyond 127.0.0.1 raises."""
    global _watching, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # audit hooks cannot be removed: install once, gate by flag
        _hook_installed = True
    _watching = NetLog()
    try:
        yield _watching
    finally:
        _watching = None


# ---------------------------------------------------------------------------- DNS stub


class FakeDNS:
    """The resolver border: fixed answers per name, and a record of every question."""

    def __init__(self, answers: Mapping[str, Sequence[str]]) -> None:
        self.answers = answers
        self.questions: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.questions.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


DNS = {
    "images.test": ["127.0.0.1"],
    "other.test": ["127.0.0.1"],
    "loopback2.test": ["127.0.0.2"],
    "v6.test": ["::1"],
    "meta.test": ["169.254.169.254"],
    "mixed.test": ["127.0.0.1", "10.0.0.1"],
    "zero.test": ["0.0.0.0"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "cgnat.test": ["100.100.100.200"],
}


@pytest.fixture
def make_downloader() -> Callable[..., Downloader]:
    def make(
        hosts: Sequence[str] = ANY, resolver: Resolver | None = None, **overrides: Any
    ) -> Downloader:
        options: dict[str, Any] = {
            "max_bytes": MAX_BYTES,
            "connect_timeout": 0.5,
            "read_timeout": 0.5,
            "total_timeout": 3.0,
            "max_redirects": 3,
            "resolver": resolver or FakeDNS(DNS),
        }
        options.update(overrides)
        return Downloader(
            hosts=HostPolicy(hosts),
            addresses=AddressPolicy([ipaddress.ip_network("127.0.0.1/32")]),
            **options,
        )

    return make


def _leftovers(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


# ---------------------------------------------------------------------------- attacks


class Attack(NamedTuple):
    url: str  # {a}: the allowed server's port, {b}: 127.0.0.2's, {v6}: ::1's
    rule: str
    hosts: tuple[str, ...] = ANY
    connects: int = 0  # requests the allowed server answers before the refusal


def _via(target: str, hops: int = 1) -> str:
    """A URL on the allowed server that redirects to ``target``."""
    return f"http://127.0.0.1:{{a}}/redirect?to={quote(target, safe='{}')}" if hops else target


ATTACKS: list[Attack] = [
    # Loopback beyond the one allowed address, however it is spelled.
    Attack("http://127.0.0.2:{b}/img.png", "loopback"),
    Attack("http://127.0.0.2.:{b}/img.png", "loopback"),
    Attack("http://2130706434:{b}/img.png", "loopback"),
    Attack("http://0177.0.0.2:{b}/img.png", "loopback"),
    Attack("http://0x7f.0.0.2:{b}/img.png", "loopback"),
    Attack("http://127.2:{b}/img.png", "loopback"),
    Attack("http://[::1]:{v6}/img.png", "loopback"),
    Attack("http://0.0.0.0:{a}/img.png", "unspecified"),
    Attack("http://0:{a}/img.png", "unspecified"),
    Attack("http://[::]:{a}/img.png", "unspecified"),
    # Address literals outside the allowed networks, however spelled, need the host allowlist
    # (a literal inside an allowed network does not: see test_allowed_network_literals).
    Attack("http://127.0.0.2:{b}/img.png", "host-not-allowed", NAMES),
    Attack("http://2130706434:{b}/img.png", "host-not-allowed", NAMES),
    Attack("http://0177.0.0.2:{b}/img.png", "host-not-allowed", NAMES),
    Attack("http://0x7f.2:{b}/img.png", "host-not-allowed", NAMES),
    Attack("http://127.2:{b}/img.png", "host-not-allowed", NAMES),
    # Private networks in every spelling.
    Attack("http://10.0.0.1/", "private-address"),
    Attack("http://167772161/", "private-address"),
    Attack("http://012.0.0.1/", "private-address"),
    Attack("http://0xa.0.0.1/", "private-address"),
    Attack("http://10.1/", "private-address"),
    Attack("http://192.168.0.1/", "private-address"),
    Attack("http://172.16.0.1/", "private-address"),
    Attack("http://[fc00::1]/", "private-address"),
    # Cloud metadata.
    Attack("http://169.254.169.254/latest/meta-data/", "cloud-metadata"),
    Attack("http://2852039166/latest/meta-data/", "cloud-metadata"),
    Attack("http://0251.0376.0251.0376/", "cloud-metadata"),
    Attack("http://0xa9fea9fe/", "cloud-metadata"),
    Attack("http://169.254.43518/", "cloud-metadata"),
    Attack("http://[fd00:ec2::254]/latest/meta-data/", "cloud-metadata"),
    Attack("http://169.254.1.1/", "link-local"),
    Attack("http://[fe80::1]/", "link-local"),
    Attack("http://[fe80::1%25lo]/", "ipv6-zone-id"),
    # IPv6 forms that embed IPv4: refused as such, even around the allowed address.
    Attack("http://[::ffff:127.0.0.1]:{a}/img.png", "ipv4-mapped"),
    Attack("http://[::ffff:7f00:1]:{a}/img.png", "ipv4-mapped"),
    Attack("http://[::ffff:169.254.169.254]/", "ipv4-mapped"),
    Attack("http://[::127.0.0.1]:{a}/img.png", "ipv4-compatible"),
    Attack("http://[64:ff9b::127.0.0.1]:{a}/img.png", "nat64"),
    Attack("http://[64:ff9b::a9fe:a9fe]/", "nat64"),
    Attack("http://[2002:7f00:1::]:{a}/img.png", "6to4"),
    Attack("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "teredo"),
    # Other non-public ranges.
    Attack("http://100.64.0.1/", "cgnat"),
    Attack("http://224.0.0.1/", "multicast"),
    Attack("http://[ff02::1]/", "multicast"),
    Attack("http://255.255.255.255/", "broadcast"),
    Attack("http://240.0.0.1/", "reserved"),
    Attack("http://192.0.2.1/", "documentation"),
    # Parser confusion and other schemes.
    Attack("http://127.0.0.1:{a}@127.0.0.2:{b}/img.png", "userinfo"),
    Attack("http://images.test@127.0.0.2:{b}/img.png", "userinfo", NAMES),
    Attack("http://127.0.0.2:{b}#@127.0.0.1:{a}/img.png", "loopback"),
    Attack("http://127.0.0.2:{b}\\@127.0.0.1:{a}/img.png", "malformed-url"),
    Attack("http://%31%32%37.0.0.2:{b}/img.png", "malformed-host"),
    Attack("file:///etc/passwd", "scheme"),
    Attack("gopher://127.0.0.1:{a}/_GET%20/img.png", "scheme"),
    Attack("ftp://127.0.0.1:{a}/img.png", "scheme"),
    Attack("dict://127.0.0.1:{a}/info", "scheme"),
    # Names whose DNS answers point inside: one bad answer refuses the name.
    Attack("http://loopback2.test:{b}/img.png", "loopback"),
    Attack("http://v6.test:{v6}/img.png", "loopback"),
    Attack("http://meta.test/latest/meta-data/", "cloud-metadata"),
    Attack("http://mixed.test:{a}/img.png", "private-address"),
    Attack("http://zero.test:{a}/img.png", "unspecified"),
    Attack("http://mapped.test:{a}/img.png", "ipv4-mapped"),
    Attack("http://cgnat.test/", "cgnat"),
    # Hosts outside the allowlist (checked before any lookup).
    Attack("http://other.test:{a}/img.png", "host-not-allowed", NAMES),
    Attack("http://images.test.other.test:{a}/img.png", "host-not-allowed", NAMES),
    Attack("http://evilimages.test:{a}/img.png", "host-not-allowed", NAMES),
    # Redirects from the allowed server: every hop is checked again.
    Attack(_via("http://169.254.169.254/latest/meta-data/"), "cloud-metadata", connects=1),
    Attack(_via("http://127.0.0.2:{b}/img.png"), "loopback", connects=1),
    Attack(_via("http://[::1]:{v6}/img.png"), "loopback", connects=1),
    Attack(_via("http://0x7f000002:{b}/img.png"), "loopback", connects=1),
    Attack(_via("http://meta.test/"), "cloud-metadata", connects=1),
    Attack(_via("file:///etc/passwd"), "scheme", connects=1),
    Attack(_via("http://images.test@127.0.0.2:{b}/img.png"), "userinfo", connects=1),
    Attack(_via("/redirect?to=http://10.0.0.1/"), "private-address", connects=2),
    Attack(
        "http://images.test:{a}/redirect?to=http://other.test:{a}/img.png",
        "host-not-allowed",
        NAMES,
        connects=1,
    ),
    Attack("http://127.0.0.1:{a}/chain/5", "redirect-limit", connects=4),
    Attack("http://127.0.0.1:{a}/loop", "redirect-limit", connects=4),
]
ATTACK_COUNT = len(ATTACKS)


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.url for a in ATTACKS])
def test_attack_is_refused(
    attack: Attack,
    servers: Servers,
    make_downloader: Callable[..., Downloader],
    net: NetLog,
    tmp_path: Path,
) -> None:
    before = (len(servers.other.hits), len(servers.v6.hits))
    downloader = make_downloader(hosts=attack.hosts)
    with pytest.raises(DownloadRefused) as excinfo:
        downloader.fetch(servers.fill(attack.url), tmp_path / "out.png")
    assert excinfo.value.rule == attack.rule
    assert excinfo.value.code == "download_refused"
    # Refused before any connection, except to the allowed server for earlier hops.
    assert net.connects == [("127.0.0.1", servers.allowed.port)] * attack.connects
    assert (len(servers.other.hits), len(servers.v6.hits)) == before
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:{a}/img.png", "http://0x7f.1:{a}/img.png"])
def test_allowed_network_literals(
    url: str, servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    """An address literal in GENVAULT_DOWNLOAD_ALLOWED_NETWORKS is as explicit as a host entry."""
    got = make_downloader(hosts=NAMES).fetch(servers.fill(url), tmp_path / "out.png")
    assert got.path.read_bytes() == PNG


def test_attack_table_is_big_enough() -> None:
    assert ATTACK_COUNT >= 40


def test_refusals_are_counted_by_rule(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    def count() -> float:
        labels = {"rule": "cloud-metadata"}
        return REGISTRY.get_sample_value("genvault_download_refusals_total", labels) or 0.0

    before = count()
    with pytest.raises(DownloadRefused):
        make_downloader().fetch("http://169.254.169.254/", tmp_path / "x")
    assert count() == before + 1


def test_refusal_message_keeps_tokens_out(
    make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    with pytest.raises(DownloadRefused) as excinfo:
        make_downloader().fetch("http://10.0.0.1/a.png?X-Amz-Signature=s3cr3t", tmp_path / "x")
    assert "10.0.0.1" in str(excinfo.value)
    assert "s3cr3t" not in str(excinfo.value)


# ---------------------------------------------------------------------------- what works


def _fetch(downloader: Downloader, url: str, dest: Path) -> Downloaded:
    result = downloader.fetch(url, dest)
    assert dest.read_bytes() == PNG
    assert result.path == dest
    assert result.size == len(PNG)
    assert result.sha256 == hashlib.sha256(PNG).hexdigest()
    return result


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{a}/img.png",
        "http://2130706433:{a}/img.png",  # the allowed address, however spelled, is allowed
        "http://0x7f.1:{a}/img.png",
        "http://127.0.0.1.:{a}/img.png",
    ],
)
def test_allowed_address_downloads(
    url: str, servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    result = _fetch(make_downloader(), servers.fill(url), tmp_path / "out.png")
    assert result.content_type == "image/png"


@pytest.mark.parametrize("path", ["/dir/rel", "/abs-path", "/scheme-relative", "/chain/2"])
def test_redirects_that_stay_allowed_succeed(
    path: str,
    servers: Servers,
    make_downloader: Callable[..., Downloader],
    net: NetLog,
    tmp_path: Path,
) -> None:
    base = f"http://127.0.0.1:{servers.allowed.port}"
    result = _fetch(make_downloader(), base + path, tmp_path / "out.png")
    assert result.final_url == f"{base}/img.png"
    assert set(net.connects) == {("127.0.0.1", servers.allowed.port)}


def test_name_is_resolved_once_and_the_checked_address_is_used(
    servers: Servers, make_downloader: Callable[..., Downloader], net: NetLog, tmp_path: Path
) -> None:
    # A rebinding DNS: the first answer passes the policy, later ones point inside.
    class Rebinding(FakeDNS):
        def __call__(self, host: str, port: int) -> list[IPAddress]:
            answers = super().__call__(host, port)
            self.answers = {host: ["10.0.0.1"]}
            return answers

    dns = Rebinding({"images.test": ["127.0.0.1"]})
    url = f"http://images.test:{servers.allowed.port}/img.png"
    _fetch(make_downloader(hosts=NAMES, resolver=dns), url, tmp_path / "out.png")
    assert dns.questions == ["images.test"]
    assert net.connects == [("127.0.0.1", servers.allowed.port)]
    assert "images.test" not in net.lookups  # urllib3 never looked the name up itself
    _, headers = servers.allowed.hits[-1]
    assert headers["Host"] == f"images.test:{servers.allowed.port}"
    assert headers["User-Agent"] == "genvault/0.1"


def test_system_resolver_looks_up_once(
    servers: Servers, make_downloader: Callable[..., Downloader], net: NetLog, tmp_path: Path
) -> None:
    if {str(a) for a in system_resolver("localhost", 80)} != {"127.0.0.1"}:
        pytest.skip("localhost resolves to more than 127.0.0.1 here")
    net.lookups.clear()
    downloader = make_downloader(hosts=("localhost",), resolver=system_resolver)
    _fetch(downloader, f"http://localhost:{servers.allowed.port}/img.png", tmp_path / "out.png")
    assert net.lookups.count("localhost") == 1


# ---------------------------------------------------------------------------- size caps


@pytest.mark.parametrize("path", ["/no-length", "/lying-chunked"])
def test_body_is_capped_while_streaming(
    path: str, servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    with pytest.raises(DownloadTooLarge) as excinfo:
        make_downloader().fetch(f"http://127.0.0.1:{servers.allowed.port}{path}", tmp_path / "o")
    assert excinfo.value.code == "download_too_large"
    assert _leftovers(tmp_path) == []


def test_announced_size_over_the_cap_is_refused_before_reading(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{servers.allowed.port}/announced-huge"
    with pytest.raises(DownloadTooLarge, match=r"announced 1000000000 bytes > 262144"):
        make_downloader().fetch(url, tmp_path / "o")
    assert _leftovers(tmp_path) == []


def test_lying_content_length_never_lets_more_in(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    # Content-Length: 10 followed by a megabyte: only the declared 10 bytes are read.
    url = f"http://127.0.0.1:{servers.allowed.port}/lying-raw"
    result = make_downloader().fetch(url, tmp_path / "o")
    assert result.size == 10
    assert (tmp_path / "o").stat().st_size == 10


def test_memory_stays_flat_for_a_large_download(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    size = 8 * 1024 * 1024
    url = f"http://127.0.0.1:{servers.allowed.port}/large?bytes={size}"
    downloader = make_downloader(max_bytes=size)
    tracemalloc.start()
    try:
        result = downloader.fetch(url, tmp_path / "o")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == size
    assert result.sha256 == hashlib.sha256(b"\x00" * size).hexdigest()
    assert peak < size // 8  # a few chunks in flight, never the body


# ---------------------------------------------------------------------------- time limits


def test_stalled_server_trips_the_read_timeout(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        make_downloader(read_timeout=0.5).fetch(
            f"http://127.0.0.1:{servers.allowed.port}/stall", tmp_path / "o"
        )
    assert time.monotonic() - started < 2.0
    assert _leftovers(tmp_path) == []


def test_trickling_server_trips_the_total_deadline(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(TransientError, match="exceeded 1 s"):
        make_downloader(read_timeout=0.5, total_timeout=1.0).fetch(
            f"http://127.0.0.1:{servers.allowed.port}/trickle", tmp_path / "o"
        )
    assert 0.9 < time.monotonic() - started < 1.8
    assert _leftovers(tmp_path) == []


def test_closed_port_is_transient(
    make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and now is not bound
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError, match="cannot connect"):
        make_downloader().fetch(f"http://127.0.0.1:{port}/img.png", tmp_path / "o")


def test_unknown_name_is_permanent(
    make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    # The resolver said "no such name" (issue 7): asking again gives the same answer.
    with pytest.raises(PermanentError, match=r"host 'nowhere\.test' does not exist"):
        make_downloader().fetch("http://nowhere.test/img.png", tmp_path / "o")


# ---------------------------------------------------------------------------- statuses


@pytest.mark.parametrize("status", [404, 408, 429, 500, 502, 503])
def test_retryable_statuses_are_transient(
    status: int, servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    with pytest.raises(TransientError, match=f"HTTP {status}") as excinfo:
        make_downloader().fetch(
            f"http://127.0.0.1:{servers.allowed.port}/status/{status}", tmp_path / "o"
        )
    assert excinfo.value.retry_after == 7.0
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("status", [400, 401, 403, 410, 204])
def test_other_statuses_are_permanent(
    status: int, servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    with pytest.raises(PermanentError, match=f"HTTP {status}") as excinfo:
        make_downloader().fetch(
            f"http://127.0.0.1:{servers.allowed.port}/status/{status}", tmp_path / "o"
        )
    assert excinfo.value.code == "download_failed"
    assert not isinstance(excinfo.value, DownloadRefused)


def test_redirect_without_location_is_permanent(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    with pytest.raises(PermanentError, match="redirect without Location"):
        make_downloader().fetch(
            f"http://127.0.0.1:{servers.allowed.port}/no-location", tmp_path / "o"
        )


def test_content_type_is_reported_as_sent(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    result = make_downloader().fetch(
        f"http://127.0.0.1:{servers.allowed.port}/html", tmp_path / "o"
    )
    assert result.content_type == "text/html"  # judging it is verify_image's job


def test_outcomes_are_counted(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    def count(outcome: str) -> float:
        labels = {"outcome": outcome}
        return REGISTRY.get_sample_value("genvault_downloads_total", labels) or 0.0

    ok, transient = count("ok"), count("transient")
    base = f"http://127.0.0.1:{servers.allowed.port}"
    make_downloader().fetch(f"{base}/img.png", tmp_path / "a")
    with pytest.raises(TransientError):
        make_downloader().fetch(f"{base}/status/503", tmp_path / "b")
    assert (count("ok"), count("transient")) == (ok + 1, transient + 1)


# ---------------------------------------------------------------------------- TLS


@dataclass
class Pki:
    ca_file: Path
    context: ssl.SSLContext
    sni: list[str | None]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a server certificate for images.test only."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)

    def cert(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "genvault test CA")])
    ca_cert = cert("genvault test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = cert("images.test", key, ca_name, ca_key, ca=False)

    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    chain = directory / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + leaf.public_bytes(serialization.Encoding.PEM)
    )
    sni: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    return Pki(ca_file, context, sni)


def test_https_pins_the_address_but_verifies_the_name(
    pki: Pki,
    serve: Callable[..., TestServer],
    make_downloader: Callable[..., Downloader],
    net: NetLog,
    tmp_path: Path,
) -> None:
    server = serve("127.0.0.1", pki.context)
    downloader = make_downloader(hosts=NAMES, ca_certs=str(pki.ca_file))
    _fetch(downloader, f"https://images.test:{server.port}/img.png", tmp_path / "out.png")
    assert pki.sni[-1] == "images.test"
    assert net.connects == [("127.0.0.1", server.port)]


def test_https_certificate_for_another_name_is_refused(
    pki: Pki,
    serve: Callable[..., TestServer],
    make_downloader: Callable[..., Downloader],
    tmp_path: Path,
) -> None:
    server = serve("127.0.0.1", pki.context)
    downloader = make_downloader(hosts=("other.test",), ca_certs=str(pki.ca_file))
    with pytest.raises(PermanentError, match=r"TLS verification failed for host 'other\.test'"):
        downloader.fetch(f"https://other.test:{server.port}/img.png", tmp_path / "o")
    assert pki.sni[-1] == "other.test"
    assert server.hits == []
    assert _leftovers(tmp_path) == []


def test_https_untrusted_issuer_is_refused(
    pki: Pki,
    serve: Callable[..., TestServer],
    make_downloader: Callable[..., Downloader],
    tmp_path: Path,
) -> None:
    server = serve("127.0.0.1", pki.context)
    downloader = make_downloader(hosts=NAMES)  # system trust store: our CA is not in it
    with pytest.raises(PermanentError, match="TLS verification failed"):
        downloader.fetch(f"https://images.test:{server.port}/img.png", tmp_path / "o")
    assert server.hits == []


def test_https_to_a_plain_http_port_is_transient(
    servers: Servers, make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    url = f"https://images.test:{servers.allowed.port}/img.png"
    with pytest.raises(TransientError, match="TLS handshake"):
        make_downloader(hosts=NAMES).fetch(url, tmp_path / "o")


def test_the_wired_downloader_applies_the_settings(servers: Servers, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # pydantic-settings: read no .env here
        download_allowed_hosts=("127.0.0.1",),
        download_allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        download_max_bytes=len(PNG) - 1,
    )
    downloader = build_downloader(settings)
    with pytest.raises(DownloadTooLarge):
        downloader.fetch(f"http://127.0.0.1:{servers.allowed.port}/img.png", tmp_path / "o")
    with pytest.raises(DownloadRefused, match="host-not-allowed"):
        downloader.fetch(f"http://localhost:{servers.allowed.port}/img.png", tmp_path / "o")
    with pytest.raises(DownloadRefused, match="loopback"):
        build_downloader(Settings(_env_file=None, download_allowed_hosts=("*",))).fetch(
            f"http://127.0.0.1:{servers.allowed.port}/img.png", tmp_path / "o"
        )


# ---------------------------------------------------------------------------- resolver answers


def _resolver_failing(errno: int) -> Resolver:
    def resolve(host: str, port: int) -> list[Any]:
        raise socket.gaierror(errno, "resolver says so")

    return resolve


def test_a_name_that_does_not_exist_is_permanent_and_a_resolver_timeout_transient(
    make_downloader: Callable[..., Downloader], tmp_path: Path
) -> None:
    nxdomain = make_downloader(resolver=_resolver_failing(socket.EAI_NONAME))
    with pytest.raises(PermanentError) as gone:
        nxdomain.fetch("http://no-such-name.test/x.png", tmp_path / "a.png")
    assert gone.value.reason == "no_such_host" and "does not exist" in gone.value.message
    timeout = make_downloader(resolver=_resolver_failing(socket.EAI_AGAIN))
    with pytest.raises(TransientError) as later:
        timeout.fetch("http://slow-dns.test/x.png", tmp_path / "b.png")
    assert later.value.reason == "resolver"
