"""A transport on pyreqwest (Rust: reqwest and hyper), guarded by the egress policy.

reqwest takes no resolver from Python, only fixed name-to-address overrides given when a
client is built, and falls back to the system resolver for any other name. So this
transport resolves each host itself, judges every address with
:meth:`EgressPolicy.check_address`, and sends through a client built for that one host and
one checked address: the override makes the connection go to exactly that address, while
the URL keeps the name for the Host header, TLS SNI and the certificate check. A client
only ever gets requests for its own host, so its fallback resolver is never asked (DNS
rebinding cannot slip in between check and connect). IP-literal hosts, which
:meth:`EgressPolicy.check_url` judged, go through one shared client that resolves nothing.

What it cannot do as :mod:`sluicegate.transports.aiohttp` does, for want of hooks in
pyreqwest (see ``docs/engine.md``, "Transports"):

- ``Sending.start()`` runs once the URL and address passed, just before the request is
  handed to the client, not once a connection is ready: a request whose connection then
  fails (refused, TLS) keeps its slot, although nothing of it left. ``done()`` runs when
  the response head arrives (the request was written by then; late is safe, the slot is
  held longer), or when the send failed.
- Cancelling :meth:`ReqwestTransport.send` does not stop the request: pyreqwest runs it in
  a task of its own that a cancellation detaches rather than aborts. Every request is
  therefore cut by reqwest itself after :data:`REQUEST_CEILING_SECONDS`, the longest
  budget a call can have; until then the connection stays open.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections import OrderedDict
from datetime import timedelta
from functools import lru_cache

from pyreqwest import exceptions as rq
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.http import HeaderMap, Url
from pyreqwest.response import Response as RqResponse

from sluicegate.call import MAX_TIMEOUT_SECONDS
from sluicegate.egress import CheckedUrls, EgressPolicy
from sluicegate.errors import EgressBlocked, TransportError, UnknownHost
from sluicegate.retry import is_unknown_host
from sluicegate.transport import Request, Response, Sending

#: Checked addresses of a host are reused this long, so most requests skip DNS.
DNS_CACHE_SECONDS = 10
#: Parsed URLs (and the policy's verdict on each), and hosts' addresses, kept; oldest dropped.
URL_CACHE_SIZE = 4096
#: Clients (one per host and address, each with its own pool) kept, oldest dropped first.
CLIENTS_KEPT = 256
#: reqwest ends every request after this long, which bounds a cancelled one (see above).
REQUEST_CEILING_SECONDS = MAX_TIMEOUT_SECONDS
_OS_ERROR = re.compile(r"\(os error (\d+)\)")
#: hyper's word for a failure of the connector: TCP or TLS, before any byte was written.
_CONNECT_FAILED = "client error (Connect)"


class ReqwestTransport:
    """A :class:`~sluicegate.transport.Transport` over pyreqwest clients.

    Like the aiohttp transport: no connection limit (the engine enforces
    ``maxHttpConnections``), no cookies, no proxy from the environment, no redirect
    followed, no re-send (reqwest retries only HTTP/2 refusals, and only HTTP/1 is
    spoken), responses never raised for their status, bodies cut at ``max_body``.
    """

    def __init__(
        self, *, policy: EgressPolicy, max_body: int, connect_timeout: float | None = None
    ) -> None:
        self._policy = policy
        self._max_body = max_body
        self._connect_timeout = connect_timeout
        self._closed = False
        self._urls = CheckedUrls(policy, Url, URL_CACHE_SIZE)
        self._addresses: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._clients: OrderedDict[tuple[str, str], Client] = OrderedDict()

    async def send(self, request: Request, sending: Sending) -> Response:
        """Send one request; a 3xx comes back as a response like any other status."""
        if self._closed:
            raise TransportError("transport is closed")
        url, reason = self._parse(request.url)
        if reason is not None:
            raise EgressBlocked(reason)
        host = url.domain
        addresses = [""] if host is None else await self._resolve(host)
        started = finished = False
        try:
            for index, address in enumerate(addresses):
                client = self._client(host or "", address)
                try:
                    builder = client.request(request.method, url)
                    if request.headers:
                        builder = builder.headers(request.headers)
                    if request.body:
                        builder = builder.body_bytes(request.body)
                    built = builder.build_streamed()
                except ValueError as exc:  # a header with CR/LF, a bad method
                    raise TransportError(f"invalid request: {exc}") from exc
                if not started:
                    await sending.start()
                    started = True
                try:
                    async with built as response:
                        finished = True
                        sending.done()
                        return await self._response(response)
                except rq.ConnectError as exc:
                    if index + 1 < len(addresses) and _CONNECT_FAILED in _causes(exc):
                        continue  # nothing was written: the next checked address
                    raise TransportError(_describe(exc, url)) from exc
                except rq.PyreqwestError as exc:
                    raise TransportError(_describe(exc, url)) from exc
            raise AssertionError("unreachable: the last address returns or raises")
        finally:
            if started and not finished:
                sending.done()  # it may have left, in part: the slot counts

    def _parse(self, raw: str) -> tuple[Url, str | None]:
        """The URL as reqwest will request it, and the policy's verdict on it (cached)."""
        try:
            return self._urls.get(raw)
        except ValueError as exc:
            raise EgressBlocked(f"malformed url: {exc}") from exc

    async def _resolve(self, host: str) -> list[str]:
        """The addresses of ``host`` the policy allows, in the resolver's order.

        Only answers with an allowed address are cached; a refusal is decided again."""
        loop = asyncio.get_running_loop()
        cached = self._addresses.get(host)
        if cached is not None and cached[0] > loop.time():
            return cached[1]
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            failure = UnknownHost if is_unknown_host(exc) else TransportError
            raise failure(f"cannot resolve host {host}: {_os_reason(exc)}") from exc
        allowed: list[str] = []
        refusal = None
        for info in infos:
            address = str(info[4][0])
            reason = self._policy.check_address(host, address)
            if reason is None:
                if address not in allowed:
                    allowed.append(address)
            elif refusal is None:
                refusal = reason
        if refusal is not None and not allowed:
            raise EgressBlocked(refusal)
        if not allowed:  # getaddrinfo raises rather than answer nothing; in case it does not
            raise UnknownHost(f"cannot resolve host {host}: no address associated with hostname")
        if len(self._addresses) >= URL_CACHE_SIZE:
            self._addresses.popitem(last=False)
        self._addresses[host] = (loop.time() + DNS_CACHE_SECONDS, allowed)
        return allowed

    def _client(self, host: str, address: str) -> Client:
        """The client that sends to ``host`` at ``address`` (both empty: IP literals)."""
        key = (host, address)
        client = self._clients.get(key)
        if client is not None:
            return client
        builder = (
            ClientBuilder().follow_redirects(False).no_proxy().referer(False).http1_only()
            .default_cookie_store(False).error_for_status(False)
            .timeout(timedelta(seconds=REQUEST_CEILING_SECONDS))
        )  # fmt: skip
        if self._connect_timeout is not None:
            builder = builder.connect_timeout(timedelta(seconds=self._connect_timeout))
        if host:
            builder = builder.resolve(host, address, 0)  # port 0: the URL's port
        if len(self._clients) >= CLIENTS_KEPT:
            # Dropped, not closed: requests still running on it finish; its pool goes with it.
            self._clients.popitem(last=False)
        client = self._clients[key] = builder.build()
        return client

    async def _response(self, response: RqResponse) -> Response:
        """Read at most ``max_body`` bytes (one more to detect a longer body), then cut.

        reqwest drops Content-Length when it decompresses, so a known length is the
        length of the body as returned and the whole body can be read at once."""
        headers = _flatten(response.headers)
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= self._max_body:
            body = bytes(await response.bytes())
            return Response(status=response.status, headers=headers, body=body)
        reader = response.body_reader
        remaining = self._max_body + 1
        chunks = []
        while remaining > 0:
            chunk = await reader.read(remaining)
            if chunk is None:
                break
            chunks.append(bytes(chunk))
            remaining -= len(chunk)
        data = b"".join(chunks)
        truncated = len(data) > self._max_body
        if truncated:
            data = data[: self._max_body]
        return Response(status=response.status, headers=headers, body=data, truncated=truncated)

    async def aclose(self) -> None:
        """Close every client; :meth:`send` refuses to run afterwards."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await client.close()


def _flatten(headers: HeaderMap) -> dict[str, str]:
    """Headers as a plain dict, repeated names joined with ", ".

    hyper keeps no spelling of header names (they arrive lower-case); they are given in
    Title-Case, the spelling most servers send. The engine reads names case-insensitively.
    """
    flat: dict[str, str] = {}
    for name, value in headers.items():
        key = _title(name)
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return flat


@lru_cache(maxsize=1024)  # the same few names come back in every response
def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _causes(exc: rq.PyreqwestError) -> list[str]:
    details = getattr(exc, "details", None) or {}
    return [cause["message"] for cause in details.get("causes") or ()]


def _describe(exc: rq.PyreqwestError, url: Url) -> str:
    """A short readable account of a failure without an HTTP status, worded as the
    aiohttp transport words the same failure."""
    causes = _causes(exc)
    last = causes[-1] if causes else str(exc)
    errno = _OS_ERROR.search(last)
    reason = os.strerror(int(errno.group(1))).lower() if errno else last
    if isinstance(exc, rq.ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, rq.RequestTimeoutError):
        return f"no complete response within {REQUEST_CEILING_SECONDS} s"
    if _CONNECT_FAILED in causes:
        return f"cannot connect to host {url.host_str}:{url.port_or_known_default}: {reason}"
    if "connection closed before message completed" in causes:
        return "server closed the connection without a response"
    if isinstance(exc, rq.ReadError | rq.BodyDecodeError):
        return "connection lost while reading the response body"
    return reason


def _os_reason(exc: OSError) -> str:
    return (exc.strerror or str(exc) or type(exc).__name__).lower()
