"""The transport contract, against real HTTP servers on loopback, for every transport.

Each test runs on the aiohttp transport and on the pyreqwest one (``kind``). Where
pyreqwest lacks a hook the contract needs, the test is marked ``xfail(strict=True)`` for it
with the reason, so that the gap stays visible and a pyreqwest that closes it fails the mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.loopback import free_port

from sluicegate.egress import EgressPolicy
from sluicegate.errors import EgressBlocked, TransportError
from sluicegate.settings import Settings
from sluicegate.transport import Request, Response, Transport
from sluicegate.transports.aiohttp import AiohttpTransport
from sluicegate.transports.reqwest import ReqwestTransport

MAX_BODY = 1024
LOOPBACK = Settings(allow_loopback=True)
#: The paths requested, in order; a list because the app state is frozen once started.
HITS = web.AppKey("hits", list[str])
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def ok(request: web.Request) -> web.Response:
    request.app[HITS].append(request.path_qs)
    response = web.Response(text="hello", headers={"X-Test": "yes"})
    response.headers.extend([("X-Multi", "1"), ("x-multi", "2")])
    return response


async def status(request: web.Request) -> web.Response:
    response = web.Response(status=int(request.match_info["code"]), text="z" * 500)
    response.enable_compression(web.ContentCoding.gzip)
    return response


async def sized(request: web.Request) -> web.StreamResponse:
    """Streams ``size`` bytes in chunks of 100, so the body arrives in pieces."""
    size = int(request.match_info["size"])
    response = web.StreamResponse()
    await response.prepare(request)
    for start in range(0, size, 100):
        await response.write(b"x" * min(100, size - start))
    return response


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    auth = request.headers.get("Authorization", "-")
    return web.Response(text=f"{request.method} {len(body)} {auth}")


async def redirect(request: web.Request) -> web.Response:
    """Redirects with the status and Location given in the query string."""
    code = int(request.query.get("status", "302"))
    location = request.query["to"].replace("PORT", str(request.url.port))
    return web.Response(status=code, headers={"Location": location})


async def chain(request: web.Request) -> web.Response:
    """Redirects ``n`` times (``/chain/n`` to ``/chain/n-1``) before answering."""
    request.app[HITS].append(request.path_qs)
    left = int(request.match_info["left"])
    if left == 0:
        return web.Response(text="end of chain")
    return web.Response(status=307, headers={"Location": f"/chain/{left - 1}"})


ROUTES = {"/ok": ok, "/status/{code}": status, "/sized/{size}": sized, "/echo": echo,
          "/redirect": redirect, "/chain/{left}": chain}  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    app = web.Application()
    app[HITS] = []
    for path, handler in ROUTES.items():
        app.router.add_route("*", path, handler)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


MakeTransport = Callable[[Settings], AbstractAsyncContextManager[Transport]]
KINDS: dict[str, type[AiohttpTransport | ReqwestTransport]] = {
    "aiohttp": AiohttpTransport,
    "reqwest": ReqwestTransport,
}
#: Where pyreqwest cannot meet the contract; each is explained in docs/engine.md.
GAPS = {
    "nothing_said": "pyreqwest has no hook for a ready connection: start() comes before connecting",
    "cancel": "pyreqwest detaches a cancelled request instead of aborting it",
}


def gap(request: pytest.FixtureRequest, kind: str, name: str, *, run: bool = True) -> None:
    """Mark the running test as a known gap of the ``reqwest`` transport. ``run=False``
    where running it would only wait for its own bound to fail."""
    if kind != "reqwest":
        return
    if not run:
        pytest.xfail(GAPS[name])
    request.applymarker(pytest.mark.xfail(strict=True, reason=GAPS[name]))


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def make_transport(kind: str) -> MakeTransport:
    """Opens a transport of the test's kind on the given settings."""

    @asynccontextmanager
    async def made(settings: Settings) -> AsyncIterator[Transport]:
        transport = KINDS[kind](policy=EgressPolicy(settings), max_body=MAX_BODY)
        try:
            yield transport
        finally:
            await transport.aclose()

    return made


@pytest.fixture
async def transport(make_transport: MakeTransport) -> AsyncIterator[Transport]:
    async with make_transport(LOOPBACK) as made:
        yield made


@asynccontextmanager
async def raw_server(handle: StreamHandler) -> AsyncIterator[int]:
    """A bare TCP server on loopback, for behaviours no well-behaved HTTP server has."""
    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await listener.wait_closed()


def get(url: str, **headers: str) -> Request:
    return Request(method="GET", url=url, headers=headers)


class Recorder:
    """A :class:`~sluicegate.transport.Sending` that notes what it was told, in order."""

    def __init__(self) -> None:
        self.said: list[str] = []

    async def start(self) -> None:
        self.said.append("start")

    def done(self) -> None:
        self.said.append("done")


async def send(transport: Transport, request: Request) -> Response:
    return await transport.send(request, Recorder())


def url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def test_ok_response(server: TestServer, transport: Transport) -> None:
    """A 200 comes back with its body and headers, repeated headers joined."""
    got = await send(transport, get(url(server, "/ok")))
    expected = (200, b"hello", "yes", "1, 2", False)
    headers = got.headers
    assert expected == (got.status, got.body, headers["X-Test"], headers["X-Multi"], got.truncated)


@pytest.mark.parametrize("code", [200, 404, 500, 503])
async def test_any_status_is_a_response(
    server: TestServer, transport: Transport, code: int
) -> None:
    """Every status is returned as a response, never raised; gzip bodies arrive decompressed."""
    response = await send(transport, get(url(server, f"/status/{code}")))
    expected = (code, b"z" * 500)
    assert expected == (response.status, response.body)


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, (0, False)), (MAX_BODY - 1, (MAX_BODY - 1, False)), (MAX_BODY, (MAX_BODY, False)),
     (MAX_BODY + 1, (MAX_BODY, True)), (50_000, (MAX_BODY, True))],
)  # fmt: skip
async def test_body_cap(
    server: TestServer, transport: Transport, size: int, expected: tuple[int, bool]
) -> None:
    """The body is cut at max_body, and truncated says so only when bytes were dropped."""
    response = await send(transport, get(url(server, f"/sized/{size}")))
    assert expected == (len(response.body), response.truncated)


@pytest.mark.parametrize(
    ("reset", "expected"),
    [(True, "connection reset by peer"),
     (False, "server closed the connection without a response")],
)  # fmt: skip
async def test_hang_up(transport: Transport, reset: bool, expected: str) -> None:
    """A server that resets or closes the connection instead of answering: TransportError."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if reset:  # linger 0: close with a RST rather than a FIN
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async with raw_server(hang_up) as port:
        with pytest.raises(TransportError) as caught:
            await send(transport, get(f"http://127.0.0.1:{port}/"))
    assert (TransportError, expected) == (type(caught.value), str(caught.value))


async def test_connection_refused(transport: Transport) -> None:
    """Nothing listening on the port makes a TransportError naming host and port."""
    port = free_port()
    with pytest.raises(TransportError) as caught:
        await send(transport, get(f"http://127.0.0.1:{port}/"))
    expected = (TransportError, f"cannot connect to host 127.0.0.1:{port}: connection refused")
    assert expected == (type(caught.value), str(caught.value))


async def test_a_redirect_is_returned_not_followed(
    server: TestServer, transport: Transport
) -> None:
    """A 3xx comes back as a response with its Location; the transport sends one request
    (following it, with a slot of its own, is the engine's business)."""
    response = await send(transport, get(url(server, "/chain/2")))
    assert (307, "/chain/1", ["/chain/2"]) == (
        response.status, response.headers["Location"], server.app[HITS]
    )  # fmt: skip


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_sending_is_told_when_the_request_leaves(
    server: TestServer, transport: Transport, method: str
) -> None:
    """With or without a body, the transport says ``start`` before writing and ``done``
    after, once each."""
    recorder = Recorder()
    request = Request(method=method, url=url(server, "/echo"), body=b"data" * (method == "POST"))
    await transport.send(request, recorder)
    assert ["start", "done"] == recorder.said


async def test_nothing_is_said_when_no_connection_was_made(
    transport: Transport, request: pytest.FixtureRequest, kind: str
) -> None:
    """A request that could not connect never started to leave."""
    gap(request, kind, "nothing_said")
    recorder = Recorder()
    with pytest.raises(TransportError):
        await transport.send(get(f"http://127.0.0.1:{free_port()}/"), recorder)
    assert [] == recorder.said


async def test_no_hidden_resend_when_a_reused_connection_drops(
    transport: Transport,
) -> None:
    """aiohttp re-sends an idempotent request once when a kept-alive connection drops; the
    transport does not: a GET on a connection the server closed fails, and the server sees
    exactly the requests the engine sent."""
    requests = 0

    async def once_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        await reader.readuntil(b"\r\n\r\n")
        requests += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")  # the same connection, reused
            requests += 1
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()

    async with raw_server(once_then_reset) as port:
        first = await send(transport, get(f"http://127.0.0.1:{port}/"))
        with pytest.raises(TransportError):
            await send(transport, get(f"http://127.0.0.1:{port}/"))
    assert (200, 2) == (first.status, requests)


async def test_loopback_without_loopback_mode(
    server: TestServer, make_transport: MakeTransport
) -> None:
    """Without loopback mode: port refused, then the address, unless the host is allowed."""
    port = server.port
    assert port is not None
    localhost = get(f"http://localhost:{port}/ok")
    refusals = {
        f"host 'localhost' resolves to {a}, a loopback address" for a in ("127.0.0.1", "::1")
    }
    async with make_transport(Settings()) as transport:
        with pytest.raises(EgressBlocked) as caught:
            await send(transport, localhost)
        assert f"port {port} is not allowed" == str(caught.value)
    async with make_transport(Settings(allowed_ports=frozenset({port}))) as transport:
        for _ in range(2):  # a refusal is never cached as an empty answer
            with pytest.raises(EgressBlocked) as caught:
                await send(transport, localhost)
            assert str(caught.value) in refusals
    recorder = Recorder()
    async with make_transport(Settings(allowed_ports=frozenset({port}))) as transport:
        with pytest.raises(EgressBlocked):
            await transport.send(localhost, recorder)
    assert [] == recorder.said  # refused at resolution: nothing started to leave
    allowed = Settings(allowed_ports=frozenset({port}), allowed_hosts=frozenset({"localhost"}))
    async with make_transport(allowed) as transport:
        response = await send(transport, localhost)
    expected = (200, ["/ok"])  # the one request that reached the server
    assert expected == (response.status, server.app[HITS])


async def test_cancellation(
    transport: Transport, request: pytest.FixtureRequest, kind: str
) -> None:
    """Cancelling a send raises only CancelledError and closes the connection."""
    gap(request, kind, "cancel", run=False)
    received = asyncio.Event()
    disconnected = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            received.set()
            await reader.read()  # b"" once the client closes its side
            disconnected.set()
        finally:
            writer.close()

    async with raw_server(slow) as port:
        task = asyncio.create_task(send(transport, get(f"http://127.0.0.1:{port}/slow")))
        await asyncio.wait_for(received.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(disconnected.wait(), 5)
    assert task.cancelled()


async def test_connects_only_to_checked_addresses(
    make_transport: MakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name resolving to a refused and an allowed address is reached at the allowed one
    only, and keeps its name in the Host header. The name is known to this test's resolver
    alone, so a client resolving it a second time, unchecked, could not reach it at all."""
    seen: list[tuple[str, str]] = []

    def recording(address: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            seen.append((address, request.host))
            return web.Response(text=address)

        return handle

    runners = []
    port = 0
    for address in ("127.0.0.1", "127.0.0.2"):  # the same port on both
        app = web.Application()
        app.router.add_route("*", "/", recording(address))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, address, port).start()
        port = runner.addresses[0][1]
        runners.append(runner)
    loop = asyncio.get_running_loop()

    async def resolve(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        assert "checked.sluicegate.test" == host
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in ADDRESSES]

    monkeypatch.setattr(loop, "getaddrinfo", resolve)
    only_one = Settings(
        allowed_ports=frozenset({port}), allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),)
    )
    try:
        async with make_transport(only_one) as transport:
            responses = [
                await send(transport, get(f"http://checked.sluicegate.test:{port}/"))
                for _ in range(2)
            ]
    finally:
        for runner in runners:
            await runner.cleanup()
    host = f"checked.sluicegate.test:{port}"
    assert [b"127.0.0.1"] * 2 == [r.body for r in responses]
    assert [("127.0.0.1", host)] * 2 == seen


ADDRESSES = ("127.0.0.2", "127.0.0.1")  # the refused one first


@pytest.mark.parametrize(("method", "headers"), [("GET", {"X-A": "b\r\nX-B: c"}), ("GE T", {})])
async def test_unwritable_request(
    server: TestServer, transport: Transport, method: str, headers: dict[str, str]
) -> None:
    """A request aiohttp will not write (header injection, bad method) is a TransportError."""
    with pytest.raises(TransportError) as caught:
        await send(transport, Request(method=method, url=url(server, "/ok"), headers=headers))
    assert str(caught.value).startswith("invalid request: ")
