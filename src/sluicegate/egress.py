"""The egress policy: which URLs and addresses an outbound call may reach.

Outbound URLs are user-supplied, so every hop of every call is checked twice: the URL
before the request (:meth:`EgressPolicy.check_url`: scheme, port, IP-literal host) and each
address a host name resolves to (:meth:`EgressPolicy.check_address`), so that the connection
is only ever made to an address that was checked. Both return a short refusal reason, or
``None`` when the target is allowed; raising is the transport's business.

Operator overrides, all from :class:`~sluicegate.settings.Settings`:

- ``allowed_hosts`` skip the IP-literal and address checks (never the scheme and port
  checks; ports are allowed separately through ``allowed_ports``);
- ``allowed_networks`` allow addresses, literal or resolved, inside those networks;
- ``allow_loopback`` is the local development mode: loopback addresses are allowed and the
  port restriction is lifted for every host.

Numeric hosts in legacy forms (``2130706433``, ``0x7f.1``, ``127.1``) are refused even when
their address would be allowed: parsers disagree on them, which is how such hosts slip past
policies, and aiohttp refuses them anyway.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar
from urllib.parse import SplitResult, urlsplit

from sluicegate.call import DEFAULT_PORTS
from sluicegate.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ORIGIN_CACHE_SIZE = 4096
# A host made only of these characters may be a numeric IPv4 form that inet_aton accepts.
_NUMERIC_CHARS = frozenset("0123456789abcdefx.")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and reaches (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not globally routable ("loopback", "private", ...), or ``None``.

    ``is_global`` is the base; multicast and reserved are added because ``ipaddress`` counts
    some of them as global. An IPv6 address embedding an IPv4 one is judged by the latter.
    """
    target = embedded_ipv4(address) or address
    if target.is_global and not target.is_multicast and not target.is_reserved:
        return None
    if target.is_unspecified:
        return "unspecified"
    if target.is_loopback:
        return "loopback"
    if target.is_link_local:
        return "link-local"
    if target.is_multicast:
        return "multicast"
    if target in _SHARED:
        return "shared (carrier-grade NAT)"
    if target.is_reserved:
        return "reserved"
    if target.is_private:
        return "private"
    return "non-public"


class EgressPolicy:
    """Decides, from the operator's settings, which URLs and addresses calls may reach."""

    __slots__ = ("_any_port", "_hosts", "_judge_origin", "_loopback", "_networks", "_ports")

    def __init__(self, settings: Settings) -> None:
        self._hosts = frozenset(_normalize_host(h) for h in settings.allowed_hosts)
        self._ports = frozenset(settings.allowed_ports)
        self._networks = tuple(settings.allowed_networks)
        self._loopback = settings.allow_loopback
        self._any_port = settings.allow_loopback
        # The verdict depends only on scheme and authority, which calls repeat: cache it.
        self._judge_origin = functools.lru_cache(maxsize=ORIGIN_CACHE_SIZE)(self._origin)

    def check_url(self, url: str) -> str | None:
        """Refusal reason for the scheme, port or IP-literal host of ``url``; ``None`` if ok.

        Host names pass here; what they resolve to is :meth:`check_address`'s to judge.
        """
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            return f"malformed url: {exc}"
        return self._judge_origin(parts.scheme, parts.netloc)

    def check_origin(self, scheme: str, netloc: str) -> str | None:
        """:meth:`check_url` for a URL already split: its scheme and ``host[:port]``."""
        return self._judge_origin(scheme, netloc)

    def check_address(self, host: str, address: str) -> str | None:
        """Refusal reason for connecting to ``address``, which ``host`` resolved to; or ``None``."""
        if _normalize_host(host) in self._hosts:
            return None
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return f"host {host!r} resolves to {address!r}, which is not an IP address"
        if self._in_networks(ip):
            return None
        kind = non_public_kind(ip)
        if kind is None or (kind == "loopback" and self._loopback):
            return None
        embedded = embedded_ipv4(ip)
        via = f" (embedding {embedded})" if embedded is not None else ""
        return f"host {host!r} resolves to {address}{via}, a {kind} address"

    def _origin(self, scheme: str, netloc: str) -> str | None:
        if scheme not in DEFAULT_PORTS:
            return f"scheme {scheme!r} is not allowed"
        authority = SplitResult(scheme, netloc, "", "", "")
        try:
            port = authority.port
        except ValueError as exc:
            return f"malformed url: {exc}"
        host = _normalize_host(authority.hostname or "")
        if not host:
            return "url has no host"
        if not host.isascii():
            # HTTP clients send the IDNA form, and IDNA maps "①②⑦。0。0。1" to 127.0.0.1.
            try:
                host = _normalize_host(host.encode("idna").decode("ascii"))
            except UnicodeError:
                return f"host {host!r} is not a valid host name"
        if port is None:
            port = DEFAULT_PORTS[scheme]
        if not self._any_port and port not in self._ports:
            return f"port {port} is not allowed"
        if host in self._hosts:
            return None
        if ":" in host or _NUMERIC_CHARS.issuperset(host):
            return self._check_literal(host)
        return None

    def _check_literal(self, host: str) -> str | None:
        try:
            ip: IPAddress = ipaddress.ip_address(host)
        except ValueError:
            if ":" in host:
                return f"host {host!r} is not a valid IPv6 address"
            try:
                packed = socket.inet_aton(host)
            except OSError:
                return None  # a host name that merely looks numeric, like "cafe.be"
            legacy = ipaddress.IPv4Address(packed)
            return f"host {host!r} is a non-canonical form of the IP address {legacy}"
        if self._in_networks(ip) or (self._loopback and non_public_kind(ip) == "loopback"):
            return None
        return f"host {host!r} is an IP address; only host names are allowed"

    def _in_networks(self, ip: IPAddress) -> bool:
        embedded = embedded_ipv4(ip)
        return any(
            ip in net or (embedded is not None and embedded in net) for net in self._networks
        )


U = TypeVar("U")


class CheckedUrls(Generic[U]):
    """URLs as an HTTP client will request them (parsed by its own ``parse``), each with
    the policy's verdict: the policy must judge the host the client connects to. Both are
    kept per URL string (URLs are immutable, the policy fixed), since journeys call the
    same URLs over and over; at most ``size``, the oldest dropped first."""

    def __init__(self, policy: EgressPolicy, parse: Callable[[str], U], size: int) -> None:
        self._policy = policy
        self._parse = parse
        self._size = size
        self._found: OrderedDict[str, tuple[U, str | None]] = OrderedDict()

    def get(self, raw: str) -> tuple[U, str | None]:
        """``raw`` parsed, and the reason the policy refuses it (None: allowed). Raises
        ValueError when the client cannot parse it."""
        found = self._found.get(raw)
        if found is None:
            url = self._parse(raw)
            if len(self._found) >= self._size:
                self._found.popitem(last=False)
            found = self._found[raw] = (url, self._policy.check_url(str(url)))
        return found


def _normalize_host(host: str) -> str:
    """Lower-case ``host`` without the trailing dot of a fully qualified name."""
    return host.lower().rstrip(".")
