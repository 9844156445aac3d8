"""The production transport: one pooled aiohttp session, guarded by the egress policy.

Every request's URL goes through :meth:`EgressPolicy.check_url` before it is sent, and every
address a host name resolves to goes through :meth:`EgressPolicy.check_address` inside the
connector's resolver. aiohttp connects to exactly the addresses the resolver returns (and to
IP-literal hosts, which ``check_url`` judged), so a connection is only ever made to an
address that was checked; the DNS cache holds only addresses that passed.

Failures without an HTTP status come out as :class:`TransportError` (a host name without
an address as its :class:`~sluicegate.errors.UnknownHost`), refusals as
:class:`EgressBlocked`; no aiohttp exception escapes. Cancellation propagates untouched and
closes the connection of the interrupted response rather than pooling it half-read.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from contextvars import ContextVar

import aiohttp
from aiohttp.abc import AbstractResolver, AbstractStreamWriter, ResolveResult
from aiohttp.connector import Connection
from multidict import CIMultiDictProxy
from yarl import URL

from sluicegate.egress import CheckedUrls, EgressPolicy
from sluicegate.errors import EgressBlocked, TransportError, UnknownHost
from sluicegate.retry import is_unknown_host
from sluicegate.transport import Request, Response, Sending

#: Resolved (and checked) addresses are reused this long, so most requests skip DNS.
DNS_CACHE_SECONDS = 10
#: Parsed URLs (and the policy's verdict on each) kept, oldest dropped first.
URL_CACHE_SIZE = 4096
# IncompleteReadError is an EOFError; TimeoutError and ssl.SSLError are OSErrors. aiohttp
# raises ValueError for a request it will not write (a header with CR/LF, a bad method).
_FAILURES = (aiohttp.ClientError, OSError, asyncio.IncompleteReadError, ValueError)
#: The :class:`Sending` of the request being sent, read by :class:`_WatchedRequest`.
_SENDING: ContextVar[Sending | None] = ContextVar("sluicegate_sending", default=None)


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
        # aiohttp expects at least one: say so as getaddrinfo would.
        raise socket.gaierror(socket.EAI_NODATA, "No address associated with hostname")

    async def close(self) -> None:
        await self._inner.close()


class _WatchedRequest(aiohttp.ClientRequest):
    """aiohttp's request, telling the :class:`Sending` of its send when it leaves.

    ``start()`` runs once the connection is ready, before anything is written. The bytes
    leave either in :meth:`send` itself (no body) or in the body-writing task that it
    schedules, which writes the buffered headers together with the body: ``done()`` runs
    after whichever of the two wrote them.
    """

    _sending: Sending | None = None
    _reported = False

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        sending = self._sending = _SENDING.get()
        if sending is not None:
            await sending.start()
        response = await super().send(conn)
        if self._writer is None:  # nothing left to write: it is on the wire already
            self._report()
        return response

    async def write_bytes(
        self, writer: AbstractStreamWriter, conn: Connection, content_length: int | None = None
    ) -> None:
        try:
            await super().write_bytes(writer, conn, content_length)
        finally:
            self._report()

    def _report(self) -> None:
        if not self._reported and self._sending is not None:
            self._reported = True
            self._sending.done()


class AiohttpTransport:
    """A :class:`~sluicegate.transport.Transport` over one keep-alive aiohttp session.

    The session is created on the first :meth:`send`, inside the running loop. Its connector
    has no connection limit (the engine enforces ``maxHttpConnections`` itself) and pools
    connections per host, port and TLS settings. No cookies are kept between calls, no
    proxy is taken from the environment, no redirect is followed, and aiohttp's own re-send
    of an idempotent request after a dropped keep-alive connection is off: each request
    that leaves must hold a slot. Responses are never raised for their status.
    """

    def __init__(
        self, *, policy: EgressPolicy, max_body: int, connect_timeout: float | None = None
    ) -> None:
        self._policy = policy
        self._max_body = max_body
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._resolver: _CheckingResolver | None = None
        self._closed = False
        self._urls = CheckedUrls(policy, URL, URL_CACHE_SIZE)

    async def send(self, request: Request, sending: Sending) -> Response:
        """Send one request; a 3xx comes back as a response like any other status."""
        session = self._session or self._open()
        url, reason = self._parse(request.url)
        if reason is not None:
            raise EgressBlocked(reason)
        token = _SENDING.set(sending)
        try:
            async with session.request(
                request.method, url, headers=request.headers or None, data=request.body or None,
                allow_redirects=False,
            ) as resp:  # fmt: skip
                return await self._response(resp)
        except _FAILURES as exc:
            refusal = _refusal(exc)
            if refusal is not None:
                raise EgressBlocked(str(refusal)) from exc
            if isinstance(exc, aiohttp.ClientConnectorDNSError) and is_unknown_host(exc.os_error):
                raise UnknownHost(_describe(exc)) from exc
            raise TransportError(_describe(exc)) from exc
        finally:
            _SENDING.reset(token)

    def _parse(self, raw: str) -> tuple[URL, str | None]:
        """The URL as aiohttp will request it, and the policy's verdict on it (cached)."""
        try:
            return self._urls.get(raw)
        except ValueError as exc:
            raise EgressBlocked(f"malformed url: {exc}") from exc

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
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=True,
            raise_for_status=False,
            request_class=_WatchedRequest,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
        )
        # aiohttp re-sends an idempotent request once when a reused connection drops; the
        # attribute is how its own tests turn that off. The engine decides every retry.
        session._retry_connection = False
        self._session = session
        return session

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
