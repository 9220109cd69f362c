from __future__ import annotations

import ipaddress

import pytest

from service.config import KNOWN_OUTPUT_HOSTS
from service.fetch.policy import AddressPolicy, DownloadRefused, HostPolicy, parse_target

# url -> (host, port, request_target): how a URL is normalised before any check.
NORMALISED = [
    ("https://CDN.Example.COM./a/b.png?x=1", ("cdn.example.com", 443, "/a/b.png?x=1")),
    ("http://example.com", ("example.com", 80, "/")),
    ("HTTPS://example.com:8443/x#frag", ("example.com", 8443, "/x")),
    ("http://2130706433/", ("127.0.0.1", 80, "/")),
    ("http://0177.0.0.1/", ("127.0.0.1", 80, "/")),
    ("http://0x7f.1/", ("127.0.0.1", 80, "/")),
    ("http://127.1/", ("127.0.0.1", 80, "/")),
    ("http://0x7f.0x0.0.01/", ("127.0.0.1", 80, "/")),
    ("http://0/", ("0.0.0.0", 80, "/")),
    ("http://167772161/", ("10.0.0.1", 80, "/")),
    ("http://0xa9fea9fe/", ("169.254.169.254", 80, "/")),
    ("http://127.0.0.1./", ("127.0.0.1", 80, "/")),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", ("127.0.0.1", 80, "/")),  # full-width
    ("http://bücher.example/", ("xn--bcher-kva.example", 80, "/")),
    ("http://[::1]:8080/p", ("::1", 8080, "/p")),
    ("http://[0:0:0:0:0:FFFF:7F00:1]/", ("::ffff:7f00:1", 80, "/")),
]


@pytest.mark.parametrize(("url", "expected"), NORMALISED)
def test_urls_are_normalised(url: str, expected: tuple[str, int, str]) -> None:
    target = parse_target(url)
    assert (target.host, target.port, target.request_target) == expected


def test_ip_literals_are_parsed_and_names_are_not() -> None:
    assert parse_target("http://0x7f.1/").ip == ipaddress.ip_address("127.0.0.1")
    assert parse_target("http://[::1]/").ip == ipaddress.ip_address("::1")
    assert parse_target("http://cdn.example.com/").ip is None
    # A last label that is not numeric keeps a name a name.
    assert parse_target("http://1.2.3.example/").ip is None


# url -> rule of the refusal raised while normalising.
REFUSED_URLS = [
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:70/_x", "scheme"),
    ("ftp://example.com/a.png", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("//example.com/a.png", "scheme"),
    ("http://allowed.example@evil.example/", "userinfo"),
    ("http://user:pass@example.com/", "userinfo"),
    ("http://@example.com/", "userinfo"),
    ("http://[fe80::1%25eth0]/", "ipv6-zone-id"),
    ("http://1.2.3.4.5/", "malformed-host"),
    ("http://4294967296/", "malformed-host"),
    ("http://0x/", "malformed-host"),
    ("http://exa mple.com/", "malformed-url"),
    ("http://example.com\\@evil.example/", "malformed-url"),
    ("http://example.com/\r\nX-Injected: 1", "malformed-url"),
    ("http://example.com:99999/", "malformed-url"),
    ("http:///path-only", "malformed-url"),
    ("http://[127.0.0.1]/", "malformed-url"),
    ("http://[v1.x]/", "malformed-host"),
    ("http://exa$mple.com/", "malformed-host"),
]


@pytest.mark.parametrize(("url", "rule"), REFUSED_URLS)
def test_bad_urls_are_refused(url: str, rule: str) -> None:
    with pytest.raises(DownloadRefused) as excinfo:
        parse_target(url)
    assert excinfo.value.rule == rule
    assert excinfo.value.code == "download_refused"


def test_refusal_message_names_rule_and_host_but_not_the_query() -> None:
    with pytest.raises(DownloadRefused) as excinfo:
        parse_target("ftp://files.example.com/a.png?token=s3cr3t")
    message = str(excinfo.value)
    assert "scheme" in message
    assert "files.example.com" in message
    assert "s3cr3t" not in message


# address -> rule with no allowed networks (None: a public address, admitted).
ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("10.0.0.1", "private-address"),
    ("172.16.5.4", "private-address"),
    ("192.168.1.1", "private-address"),
    ("fc00::1", "private-address"),
    ("fd12:3456::1", "private-address"),
    ("169.254.169.254", "cloud-metadata"),
    ("fd00:ec2::254", "cloud-metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("100.64.0.1", "cgnat"),
    ("100.127.255.254", "cgnat"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("2001:db8::1", "documentation"),
    ("198.18.0.1", "benchmark"),
    ("192.0.0.8", "special-purpose"),
    ("192.88.99.1", "6to4"),
    ("2001:10::1", "not-global"),
    ("100::1", "reserved"),
    ("fec0::1", "site-local"),
    ("::ffff:127.0.0.1", "ipv4-mapped"),
    ("::ffff:8.8.8.8", "ipv4-mapped"),  # public inside, refused all the same
    ("::ffff:0:808:808", "ipv4-translated"),
    ("::127.0.0.1", "ipv4-compatible"),
    ("::8.8.8.8", "ipv4-compatible"),
    ("64:ff9b::7f00:1", "nat64"),
    ("64:ff9b::808:808", "nat64"),
    ("64:ff9b:1::a00:1", "nat64"),
    ("2002:7f00:1::", "6to4"),
    ("2002:808:808::1", "6to4"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("2606:4700:4700::1111", None),
    ("104.18.0.1", None),
]


@pytest.mark.parametrize(("address", "rule"), ADDRESSES)
def test_address_rules(address: str, rule: str | None) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) == rule


def test_check_raises_with_rule_and_host() -> None:
    with pytest.raises(DownloadRefused) as excinfo:
        AddressPolicy().check(ipaddress.ip_address("10.1.2.3"), "images.example.com")
    assert excinfo.value.rule == "private-address"
    assert excinfo.value.host == "images.example.com"
    assert "10.1.2.3" in str(excinfo.value)


@pytest.mark.parametrize(
    ("allowed", "address", "rule"),
    [
        (["127.0.0.1/32"], "127.0.0.1", None),
        (["127.0.0.1/32"], "127.0.0.2", "loopback"),
        (["127.0.0.0/8"], "::ffff:127.0.0.1", "ipv4-mapped"),
        (["127.0.0.0/8"], "::127.0.0.1", "ipv4-compatible"),
        (["127.0.0.0/8"], "::1", "loopback"),
        (["10.0.0.0/8"], "10.20.30.40", None),
        (["10.0.0.0/8"], "64:ff9b::a00:1", "nat64"),
        (["10.0.0.0/8"], "172.16.0.1", "private-address"),
        (["fd00::/8"], "fd00::5", None),
        (["64:ff9b::/96"], "64:ff9b::a00:1", None),  # explicitly allowed, so admitted
    ],
)
def test_allowed_networks(allowed: list[str], address: str, rule: str | None) -> None:
    policy = AddressPolicy([ipaddress.ip_network(n) for n in allowed])
    assert policy.refusal(ipaddress.ip_address(address)) == rule


# (allowed suffixes, url, admitted?)
HOSTS = [
    (["modelslab.com"], "https://modelslab.com/x", True),
    (["modelslab.com"], "https://cdn.modelslab.com/x", True),
    (["modelslab.com"], "https://CDN.ModelsLab.com./x", True),
    (["modelslab.com"], "https://a.b.modelslab.com/x", True),
    (["modelslab.com"], "https://evilmodelslab.com/x", False),
    (["modelslab.com"], "https://modelslab.com.evil.example/x", False),
    (["modelslab.com"], "https://com/x", False),
    (["MODELSLAB.COM."], "https://cdn.modelslab.com/x", True),
    (["cdn.modelslab.com"], "https://modelslab.com/x", False),
    (["*"], "https://anything.example/x", True),
    (["*"], "http://8.8.8.8/x", True),
    (["modelslab.com"], "http://8.8.8.8/x", False),
    (["8.8.8.8"], "http://8.8.8.8/x", True),
    (["8.8.8.8"], "http://134744072/x", True),  # the same address, spelled as libc reads it
    (["8.8.8.8"], "http://8.8.8.9/x", False),
    (["8.8"], "http://8.8.8.8/x", False),  # no suffix matching on addresses
    (["0.1"], "http://127.0.0.1/x", False),
    (["::1"], "http://[::1]/x", True),
    ([], "https://modelslab.com/x", False),
]


@pytest.mark.parametrize(("suffixes", "url", "admitted"), HOSTS)
def test_host_policy(suffixes: list[str], url: str, admitted: bool) -> None:
    policy = HostPolicy(suffixes)
    target = parse_target(url)
    assert policy.allows(target) is admitted
    if not admitted:
        with pytest.raises(DownloadRefused, match="host-not-allowed"):
            policy.check(target)


def test_host_header_keeps_non_default_ports_and_brackets() -> None:
    assert parse_target("https://a.example/").host_header == "a.example"
    assert parse_target("http://a.example:8080/").host_header == "a.example:8080"
    assert parse_target("http://[2606:4700::1]:81/").host_header == "[2606:4700::1]:81"


@pytest.mark.parametrize(
    "host",
    [
        # PROVIDERS.md, "Output hosts seen", plus the AI/ML API's.
        "pub-3626123a908346a7a8be8d9295f44e26.r2.dev",
        "pub-8b49af329fae499aa563997f5d4068a4.r2.dev",
        "cdn2.stablediffusionapi.com",
        "cdn.stablediffusionapi.com",
        "image.stablediffusionapi.com",
        "cdn.modelslab.com",
        "assets.modelslab.com",
        "assets.modelslab.ai",
        "modelslab-bom.s3.amazonaws.com",
        "d1okzptojspljx.cloudfront.net",
        "cdn.aimlapi.com",
        "v3b.fal.media",
    ],
)
def test_default_allowlist_admits_the_documented_output_hosts(host: str) -> None:
    assert HostPolicy(KNOWN_OUTPUT_HOSTS).allows(parse_target(f"https://{host}/x.png"))


@pytest.mark.parametrize(
    "host", ["pub-0000.r2.dev", "s3.amazonaws.com", "evil.cloudfront.net", "127.0.0.1"]
)
def test_default_allowlist_does_not_admit_shared_hosting_at_large(host: str) -> None:
    assert not HostPolicy(KNOWN_OUTPUT_HOSTS).allows(parse_target(f"https://{host}/x.png"))
