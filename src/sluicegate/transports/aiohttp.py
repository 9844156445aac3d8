"""The production transport: one pooled aiohttp session, guarded by the egress policy.

Every hop's URL goes through :meth:`EgressPolicy.check_url` before it is requested, and every
address a host name resolves to goes through :meth:`EgressPolicy.check_address` inside the
connector's resolver. aiohttp connects to exactly the addresses the resolver returns (and to
IP-literal hosts, which ``check_url`` judged), so a connection is only ever made to an
address that was checked; the DNS cache holds only addresses that passed.

Failures without an HTTP status come out as :class:`TransportError`, refusals as
:class:`EgressBlocked`; no aiohttp exception escapes. Cancellation propagates untouched and
closes the connection of the interrupted response rather than pooling it half-read.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

from sluicegate.egress import EgressPolicy
from sluicegate.errors import EgressBlocked, TransportError
from sluicegate.transport import Request, Response

#: Resolved (and checked) addresses are reused this long, so most requests skip DNS.
DNS_CACHE_SECONDS = 10
#: Parsed first-hop URLs (and the policy's verdict on each) kept, oldest dropped first.
HOP_CACHE_SIZE = 4096
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_BODY_HEADERS = frozenset({"content-length", "content-type", "content-encoding"})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
# IncompleteReadError is an EOFError; TimeoutError and ssl.SSLError are OSErrors. aiohttp
# raises ValueError for a request it will not write (a header with CR/LF, a bad method).
_FAILURES = (aiohttp.ClientError, OSError, asyncio.IncompleteReadError, ValueError)


class _Refused(OSError):
    """Every address of a host was refused. An OSError so aiohttp treats it as a DNS failure."""


class _CheckingResolver(AbstractResolver):
    """Resolves with aiohttp's default resolver, then drops the addresses the policy refuses."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver) -> None:
        self._policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = []
        refusal = None
        for result in results:
            reason = self._policy.check_address(host, result["host"])
            if reason is None:
                allowed.append(result)
            elif refusal is None:
                refusal = reason
        if allowed:
            return allowed
        if refusal is not None:
            raise _Refused(refusal)
        raise OSError(f"host {host!r} has no address")  # aiohttp expects at least one

    async def close(self) -> None:
        await self._inner.close()


class AiohttpTransport:
    """A :class:`~sluicegate.transport.Transport` over one keep-alive aiohttp session.

    The session is created on the first :meth:`send`, inside the running loop. Its connector
    has no connection limit (the engine enforces ``maxHttpConnections`` itself) and pools
    connections per host, port and TLS settings. No cookies are kept between calls and no
    proxy is taken from the environment. Responses are never raised for their status.
    """

    def __init__(
        self,
        *,
        policy: EgressPolicy,
        max_body: int,
        max_redirects: int = 5,
        connect_timeout: float | None = None,
    ) -> None:
        self._policy = policy
        self._max_body = max_body
        self._max_redirects = max_redirects
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._resolver: _CheckingResolver | None = None
        self._closed = False
        self._hops: dict[str, tuple[URL, str | None]] = {}

    async def send(self, request: Request) -> Response:
        """Make one attempt, following at most ``max_redirects`` redirects, each one checked.

        When the redirect budget is spent, the last 3xx response is returned as it is.
        """
        session = self._session or self._open()
        method = request.method
        headers: Mapping[str, str] | None = request.headers or None
        body = request.body or None
        url, reason = self._first_hop(request.url)
        redirects = 0
        while True:
            if redirects:
                reason = self._policy.check_url(str(url))
            if reason is not None:
                raise EgressBlocked(reason)
            try:
                async with session.request(
                    method, url, headers=headers, data=body, allow_redirects=False
                ) as resp:
                    target = None
                    if resp.status in _REDIRECTS and redirects < self._max_redirects:
                        target = _redirect_target(resp)
                    if target is None:
                        return await self._response(resp)
            except _FAILURES as exc:
                refusal = _refusal(exc)
                if refusal is not None:
                    raise EgressBlocked(str(refusal)) from exc
                raise TransportError(_describe(exc)) from exc
            redirects += 1
            if _becomes_get(resp.status, method):
                method, body = "GET", None
                headers = _without(headers, _BODY_HEADERS)
            if _origin(url) != _origin(target):
                headers = _without(headers, _CREDENTIAL_HEADERS)
            url = target

    def _first_hop(self, raw: str) -> tuple[URL, str | None]:
        """The URL as aiohttp will request it, and the policy's verdict on it.

        Requested as parsed here, because the policy must judge the host aiohttp connects
        to. Both are kept per URL string (URLs are immutable, the policy fixed), since
        journeys call the same URLs over and over; the cache is bounded.
        """
        found = self._hops.get(raw)
        if found is None:
            try:
                url = URL(raw)
            except ValueError as exc:
                raise EgressBlocked(f"malformed url: {exc}") from exc
            if len(self._hops) >= HOP_CACHE_SIZE:
                del self._hops[next(iter(self._hops))]
            found = self._hops[raw] = (url, self._policy.check_url(str(url)))
        return found

    async def aclose(self) -> None:
        """Close the pooled connections; :meth:`send` refuses to run afterwards."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        if self._resolver is not None:
            await self._resolver.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise TransportError("transport is closed")
        self._resolver = _CheckingResolver(self._policy, aiohttp.DefaultResolver())
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            resolver=self._resolver,
            use_dns_cache=True,
            ttl_dns_cache=DNS_CACHE_SECONDS,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=True,
            raise_for_status=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
        )
        return self._session

    async def _response(self, resp: aiohttp.ClientResponse) -> Response:
        """Read at most ``max_body`` bytes (one more to detect a longer body), then cut."""
        length = resp.content_length
        if length is not None and length <= self._max_body:  # the usual case: one read
            body = await resp.read()
            return Response(status=resp.status, headers=_flatten(resp.headers), body=body)
        content = resp.content
        remaining = self._max_body + 1
        chunks = []
        while remaining > 0 and not content.at_eof():
            chunk = await content.read(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        truncated = len(data) > self._max_body
        if truncated:
            data = data[: self._max_body]
        return Response(
            status=resp.status, headers=_flatten(resp.headers), body=data, truncated=truncated
        )


def _redirect_target(resp: aiohttp.ClientResponse) -> URL | None:
    """Where a 3xx response sends us, resolved against its URL; ``None`` if nowhere usable."""
    location = resp.headers.get("Location")
    if not location:
        return None
    try:
        return resp.url.join(URL(location))
    except ValueError:
        return None


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.raw_host, url.port


def _becomes_get(status: int, method: str) -> bool:
    """Whether a redirect turns the request into a GET without body, as browsers do."""
    return (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST")


def _without(headers: Mapping[str, str] | None, names: frozenset[str]) -> dict[str, str] | None:
    if not headers:
        return None
    return {k: v for k, v in headers.items() if k.lower() not in names}


def _flatten(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """Headers as a plain dict; repeated names (in any case) are joined with ", "."""
    flat = dict(headers.items())
    if len(flat) == len(headers) and len({name.lower() for name in flat}) == len(flat):
        return flat  # the usual case: no name repeated
    flat = {}
    first_spelling: dict[str, str] = {}
    for name, value in headers.items():
        key = first_spelling.setdefault(name.lower(), name)
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return flat


def _refusal(exc: BaseException) -> _Refused | None:
    """The resolver's refusal behind ``exc``, which aiohttp wraps in a connector error."""
    seen: BaseException | None = exc
    for _ in range(8):  # bounded: cause chains are short, and may in theory loop
        if seen is None or isinstance(seen, _Refused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: BaseException) -> str:
    """A short readable account of a failure without an HTTP status."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {exc.host}:{exc.port} refused: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error with host {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to host {exc.host}:{exc.port}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "connection timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without a response"
    if isinstance(exc, aiohttp.ClientPayloadError | asyncio.IncompleteReadError):
        return "connection lost while reading the response body"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid url: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid HTTP response: {exc.message}"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    if isinstance(exc, ValueError):
        return f"invalid request: {exc}"
    return str(exc) or type(exc).__name__


def _os_reason(exc: OSError) -> str:
    """``connection reset by peer`` rather than ``[Errno 104] Connect call failed (...)``."""
    if isinstance(exc, ConnectionResetError) or exc.errno == errno.ECONNRESET:
        return "connection reset by peer"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if exc.errno and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc) or type(exc).__name__).lower()
