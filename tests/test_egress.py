"""The egress policy: which URLs and resolved addresses outbound calls may reach."""

from __future__ import annotations

import ipaddress

import pytest

from sluicegate.egress import EgressPolicy
from sluicegate.settings import Settings

DEFAULT = Settings()
LOOPBACK = Settings(allow_loopback=True)
TEN = Settings(allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),))
ULA = Settings(allowed_networks=(ipaddress.ip_network("fd00::/8"),))
HOSTS = Settings(allowed_hosts=frozenset({"Intranet.Example", "10.9.9.9"}))
PORTS = Settings(allowed_ports=frozenset({80, 443, 8443}))

IP_ONLY = "is an IP address; only host names are allowed"


@pytest.mark.parametrize(
    ("settings", "url", "expected"),
    [
        (DEFAULT, "https://example.org/x?y=1", None),
        (DEFAULT, "http://example.org/", None),
        (DEFAULT, "HTTP://Example.ORG:80/", None),
        (DEFAULT, "https://example.org:443/", None),
        (DEFAULT, "https://example.org:80/", None),
        (DEFAULT, "http://localhost/", None),
        (DEFAULT, "http://cafe.be/", None),
        (DEFAULT, "http://exämple.org/", None),
        (DEFAULT, "ftp://example.org/", "scheme 'ftp' is not allowed"),
        (DEFAULT, "file:///etc/passwd", "scheme 'file' is not allowed"),
        (DEFAULT, "gopher://example.org:70/", "scheme 'gopher' is not allowed"),
        (DEFAULT, "//example.org/", "scheme '' is not allowed"),
        (DEFAULT, "http:///path", "url has no host"),
        (DEFAULT, "http://example.org:8080/", "port 8080 is not allowed"),
        (DEFAULT, "https://example.org:0/", "port 0 is not allowed"),
        (DEFAULT, "http://example.org:99999/", "malformed url: Port out of range 0-65535"),
        (DEFAULT, "http://10.0.0.1/", f"host '10.0.0.1' {IP_ONLY}"),
        (DEFAULT, "http://8.8.8.8/", f"host '8.8.8.8' {IP_ONLY}"),
        (DEFAULT, "http://127.0.0.1./", f"host '127.0.0.1' {IP_ONLY}"),
        (DEFAULT, "http://[::1]/", f"host '::1' {IP_ONLY}"),
        (DEFAULT, "http://[::ffff:127.0.0.1]/", f"host '::ffff:127.0.0.1' {IP_ONLY}"),
        (DEFAULT, "http://[2606:4700::1111]/", f"host '2606:4700::1111' {IP_ONLY}"),
        (DEFAULT, "http://①②⑦.0.0.1/", f"host '127.0.0.1' {IP_ONLY}"),
        (DEFAULT, "http://127。0。0。1/", f"host '127.0.0.1' {IP_ONLY}"),
        (
            DEFAULT,
            "http://2130706433/",
            "host '2130706433' is a non-canonical form of the IP address 127.0.0.1",
        ),
        (
            DEFAULT,
            "http://0x7f.1/",
            "host '0x7f.1' is a non-canonical form of the IP address 127.0.0.1",
        ),
        (
            DEFAULT,
            "http://127.1/",
            "host '127.1' is a non-canonical form of the IP address 127.0.0.1",
        ),
        (
            DEFAULT,
            "http://0177.0.0.1/",
            "host '0177.0.0.1' is a non-canonical form of the IP address 127.0.0.1",
        ),
        (HOSTS, "http://intranet.example./", None),
        (HOSTS, "http://10.9.9.9/", None),
        (HOSTS, "ftp://intranet.example/", "scheme 'ftp' is not allowed"),
        (HOSTS, "http://intranet.example:8080/", "port 8080 is not allowed"),
        (TEN, "http://10.1.2.3/", None),
        (TEN, "http://[::ffff:10.1.2.3]/", None),
        (TEN, "http://11.0.0.1/", f"host '11.0.0.1' {IP_ONLY}"),
        (ULA, "http://[fd12::1]/", None),
        (PORTS, "https://example.org:8443/", None),
        (PORTS, "https://example.org:8444/", "port 8444 is not allowed"),
        (LOOPBACK, "http://127.0.0.1:8080/", None),
        (LOOPBACK, "http://[::1]:1/", None),
        (LOOPBACK, "http://localhost:5000/", None),
        (LOOPBACK, "http://example.org:8080/", None),
        (LOOPBACK, "http://10.0.0.1/", f"host '10.0.0.1' {IP_ONLY}"),
        (LOOPBACK, "ftp://127.0.0.1/", "scheme 'ftp' is not allowed"),
        (
            LOOPBACK,
            "http://2130706433:8080/",
            "host '2130706433' is a non-canonical form of the IP address 127.0.0.1",
        ),
    ],
)
def test_check_url(settings: Settings, url: str, expected: str | None) -> None:
    """check_url refuses bad schemes, ports and IP-literal hosts, within the allowances."""
    assert expected == EgressPolicy(settings).check_url(url)


def resolves(address: str, kind: str) -> str:
    return f"host 'api.example' resolves to {address}, a {kind} address"


@pytest.mark.parametrize(
    ("settings", "address", "expected"),
    [
        (DEFAULT, "93.184.216.34", None),
        (DEFAULT, "2606:4700::1111", None),
        (DEFAULT, "::ffff:8.8.8.8", None),
        (DEFAULT, "64:ff9b::808:808", None),
        (DEFAULT, "2002:808:808::1", None),
        (DEFAULT, "127.0.0.1", resolves("127.0.0.1", "loopback")),
        (DEFAULT, "127.8.9.10", resolves("127.8.9.10", "loopback")),
        (DEFAULT, "::1", resolves("::1", "loopback")),
        (DEFAULT, "10.0.0.1", resolves("10.0.0.1", "private")),
        (DEFAULT, "172.16.0.1", resolves("172.16.0.1", "private")),
        (DEFAULT, "192.168.1.1", resolves("192.168.1.1", "private")),
        (DEFAULT, "fc00::1", resolves("fc00::1", "private")),
        (DEFAULT, "2001:db8::1", resolves("2001:db8::1", "private")),
        (DEFAULT, "169.254.169.254", resolves("169.254.169.254", "link-local")),
        (DEFAULT, "fe80::1", resolves("fe80::1", "link-local")),
        (DEFAULT, "fe80::1%eth0", resolves("fe80::1%eth0", "link-local")),
        (DEFAULT, "100.64.0.1", resolves("100.64.0.1", "shared (carrier-grade NAT)")),
        (DEFAULT, "0.0.0.0", resolves("0.0.0.0", "unspecified")),
        (DEFAULT, "::", resolves("::", "unspecified")),
        (DEFAULT, "224.0.0.1", resolves("224.0.0.1", "multicast")),
        (DEFAULT, "ff02::1", resolves("ff02::1", "multicast")),
        (DEFAULT, "240.0.0.1", resolves("240.0.0.1", "reserved")),
        (DEFAULT, "255.255.255.255", resolves("255.255.255.255", "reserved")),
        (DEFAULT, "::127.0.0.1", resolves("::127.0.0.1", "reserved")),
        (DEFAULT, "::ffff:10.0.0.1", resolves("::ffff:10.0.0.1 (embedding 10.0.0.1)", "private")),
        (
            DEFAULT,
            "::ffff:127.0.0.1",
            resolves("::ffff:127.0.0.1 (embedding 127.0.0.1)", "loopback"),
        ),
        (
            DEFAULT,
            "64:ff9b::a9fe:a9fe",
            resolves("64:ff9b::a9fe:a9fe (embedding 169.254.169.254)", "link-local"),
        ),
        (DEFAULT, "2002:7f00:1::", resolves("2002:7f00:1:: (embedding 127.0.0.1)", "loopback")),
        (
            DEFAULT,
            "not-an-ip",
            "host 'api.example' resolves to 'not-an-ip', which is not an IP address",
        ),
        (LOOPBACK, "127.0.0.1", None),
        (LOOPBACK, "::1", None),
        (LOOPBACK, "::ffff:127.0.0.1", None),
        (LOOPBACK, "10.0.0.1", resolves("10.0.0.1", "private")),
        (TEN, "10.2.3.4", None),
        (TEN, "::ffff:10.2.3.4", None),
        (TEN, "192.168.0.1", resolves("192.168.0.1", "private")),
        (ULA, "fd12::1", None),
        (ULA, "10.0.0.1", resolves("10.0.0.1", "private")),
    ],
)
def test_check_address(settings: Settings, address: str, expected: str | None) -> None:
    """check_address refuses every address that is not globally routable, within allowances."""
    assert expected == EgressPolicy(settings).check_address("api.example", address)


@pytest.mark.parametrize("host", ["intranet.example", "INTRANET.example.", "Intranet.Example"])
def test_allowed_host_skips_address_checks(host: str) -> None:
    """A host in allowed_hosts may resolve anywhere, whatever its spelling."""
    assert None is EgressPolicy(HOSTS).check_address(host, "10.0.0.1")


def test_allowed_host_is_exact() -> None:
    """allowed_hosts names hosts, not domains: a subdomain is still checked."""
    expected = "host 'a.intranet.example' resolves to 10.0.0.1, a private address"
    assert expected == EgressPolicy(HOSTS).check_address("a.intranet.example", "10.0.0.1")
