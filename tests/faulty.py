"""External systems that misbehave, byte by byte: raw asyncio TCP servers on 127.0.0.1.

:func:`serve_faulty` reads one HTTP/1.1 request per connection (its head, and a body of
its ``Content-Length``), then hands the connection to a *behaviour* that decides every
byte of the answer, or that there is none: :func:`hang`, :func:`reset`, :func:`hang_up`,
:func:`drip`, :func:`slow_head`, :func:`flood`, :func:`inflating`. No HTTP library stands
in between, so what reaches the engine is exactly what the behaviour wrote.

:class:`Upstream` keeps what the server saw and did, for the tests to reconcile with what
the engine reports: connections accepted, requests read, connections the client closed,
bytes written. Behaviours that take time wait on the test's
:class:`~sluicegate.testing.FakeClock`, so no test sleeps for time to pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sluicegate.testing import FakeClock

GIB = 1 << 30
MIB = 1 << 20
#: Zeros written per write by :func:`flood`.
FLOOD_CHUNK = 64 * 1024


@dataclass
class Upstream:
    """What a faulty server saw and did, over every connection it accepted."""

    base: str = ""
    connections: int = 0  # connections accepted
    requests: int = 0  # requests read whole (head and body)
    gone: int = 0  # connections the client closed or reset while the behaviour ran
    sent: int = 0  # bytes handed to the sockets: an upper bound of what left
    body_sent: int = 0  # of which, response body bytes (drip, flood, inflating)
    finished: int = 0  # connections whose behaviour is over and which were closed
    errors: list[BaseException] = field(default_factory=list)  # the server's own failures

    def url(self, path: str = "x") -> str:
        return f"{self.base}/{path}"


class Exchange:
    """One connection whose request was read: what a behaviour answers with."""

    def __init__(
        self, upstream: Upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.upstream = upstream
        self.writer = writer
        self.hit = upstream.requests  # 1 for the first request the server read
        self.client_gone = asyncio.Event()
        self._watch = asyncio.create_task(self._watch_client(reader))

    async def _watch_client(self, reader: asyncio.StreamReader) -> None:
        """Discard whatever else the client sends; note when it closes or resets."""
        with contextlib.suppress(ConnectionError):
            while await reader.read(FLOOD_CHUNK):
                pass
        self._left()

    def _left(self) -> None:
        """The client closed or reset the connection (counted once, however it is seen)."""
        if not self.client_gone.is_set():
            self.upstream.gone += 1
            self.client_gone.set()

    async def send(self, data: bytes, *, body: bool = False) -> bool:
        """Write ``data`` and wait until the socket takes it; False once the client is gone."""
        if self.client_gone.is_set() or self.writer.is_closing():
            self._left()
            return False
        self.writer.write(data)
        self.upstream.sent += len(data)
        if body:
            self.upstream.body_sent += len(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            self._left()
            return False
        return True

    def reset(self) -> None:
        """Close with RST rather than FIN: SO_LINGER on, with a zero timeout."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self._watch.cancel()
        await asyncio.gather(self._watch, return_exceptions=True)
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


Behaviour = Callable[[Exchange], Awaitable[None]]


@asynccontextmanager
async def serve_faulty(behaviour: Behaviour) -> AsyncIterator[Upstream]:
    """Serve ``behaviour`` on 127.0.0.1, an ephemeral port, for the block. At the end every
    connection still open is cut; a failure of the server itself is raised then."""
    upstream = Upstream()
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        upstream.connections += 1
        try:
            if not await _read_request(reader):
                return
            upstream.requests += 1
            exchange = Exchange(upstream, reader, writer)
            try:
                await behaviour(exchange)
            finally:
                await exchange.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as exc:
            upstream.errors.append(exc)
        finally:
            writer.transport.abort()
            upstream.finished += 1
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    upstream.base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield upstream
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()
    if upstream.errors:
        raise upstream.errors[0]


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request (head, and a body of its Content-Length); False if there was none."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    try:
        await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return False
    return True


# --- behaviours --------------------------------------------------------------------------


async def hang(exchange: Exchange) -> None:
    """Never answer; hold the connection until the client closes it."""
    await exchange.client_gone.wait()


async def reset(exchange: Exchange) -> None:
    """Answer nothing and reset the connection (RST, not FIN)."""
    exchange.reset()


async def hang_up(exchange: Exchange) -> None:
    """Answer nothing and close the connection cleanly (FIN)."""


def head(length: int | None, content_type: str = "application/octet-stream") -> bytes:
    """A 200 response head: with ``Content-Length: length``, or chunked when None."""
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n".encode()


def drip(clock: FakeClock, *, length: int, every: float) -> Behaviour:
    """200 with a ``length``-byte body, sent one byte per ``every`` seconds of ``clock``."""

    async def behave(exchange: Exchange) -> None:
        if not await exchange.send(head(length, "text/plain")):
            return
        for _ in range(length):
            await clock.sleep(every)
            if not await exchange.send(b"x", body=True):
                return
        await exchange.client_gone.wait()

    return behave


def slow_head(clock: FakeClock, *, every: float) -> Behaviour:
    """A response head sent one byte per ``every`` seconds of ``clock``, starting with the
    status line, and never finished: after the status line, one header value grows forever."""

    async def behave(exchange: Exchange) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: ":
            await clock.sleep(every)
            if not await exchange.send(bytes([byte])):
                return
        while await exchange.send(b"z"):
            await clock.sleep(every)

    return behave


def flood(*, chunked: bool, total: int = 2 * GIB) -> Behaviour:
    """200 with a ``total``-byte body of zeros (``Content-Length``, or chunked without a
    length), written as fast as the socket takes it, until done or the client is gone."""
    zeros = bytes(FLOOD_CHUNK)
    frame = b"%x\r\n%s\r\n" % (FLOOD_CHUNK, zeros) if chunked else zeros

    async def behave(exchange: Exchange) -> None:
        if not await exchange.send(head(None if chunked else total)):
            return
        for _ in range(total // FLOOD_CHUNK):
            if not await exchange.send(frame, body=True):
                return
        if chunked:
            await exchange.send(b"0\r\n\r\n")

    return behave


@functools.cache
def _gzip_blocks() -> tuple[bytes, bytes]:
    """A gzip stream's first MiB of zeros, and any further MiB: each block ends with a full
    flush, which resets the compressor, so every block after the first is the same bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first, compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)


def inflating(*, total: int = 2 * GIB) -> Behaviour:
    """200 with ``Content-Encoding: gzip``: about 1 KiB per MiB of zeros, ``total`` bytes
    once inflated (a body that is small on the wire and huge in memory: a "zip bomb")."""

    async def behave(exchange: Exchange) -> None:
        first, block = _gzip_blocks()
        blocks = total // MIB
        length = len(first) + (blocks - 1) * len(block)
        gzip_head = head(length).replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n")
        if not await exchange.send(gzip_head):
            return
        for n in range(blocks):
            if not await exchange.send(block if n else first, body=True):
                return
        await exchange.client_gone.wait()

    return behave


def answer_then(first: Callable[[int], bytes | None], then: Behaviour) -> Behaviour:
    """Answer request ``n`` (counted over the server's life) with ``first(n)``, a whole
    response after which the connection is closed, or, when that is None, as ``then``."""

    async def behave(exchange: Exchange) -> None:
        response = first(exchange.hit)
        if response is None:
            await then(exchange)
        else:
            await exchange.send(response)

    return behave


def status(code: int, reason: str) -> bytes:
    """A whole response of status ``code``, empty, that closes its connection (so that no
    retry may find it pooled, half-closed)."""
    return f"HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
