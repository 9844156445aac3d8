"""A loopback external system that records when each request arrived, as the kernel saw it.

Tests of rate limits ask "how many calls reached the external system in any window of one
period?". The answer must not depend on when the measuring process got round to reading
its sockets: under load (or with :func:`busy_core`) a server can be scheduled late, and a
clock read in user space would then bunch arrivals together or spread them apart. So this
server runs as its own process and asks the kernel for receive timestamps (SO_TIMESTAMPNS):
each ``recvmsg`` returns the CLOCK_REALTIME at which the data reached the socket.

For TCP the kernel reports one timestamp per ``recvmsg``: that of the newest segment read
(segments queued together are even coalesced, keeping the newest stamp). A request is
stamped exactly when the connection had no unread older data when it came, as with any
client that waits for each answer; pipelined requests read together share the later time.

Run ``python tests/arrivals.py``: it prints ``PORT <n>`` and serves until SIGTERM/SIGINT.
Tests use :func:`arrivals_system`, which does that in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
MAX_HEAD = 64 * 1024
NO_BODY = {204, 304}
REASONS = {status.value: status.phrase for status in HTTPStatus}


class BadRequest(Exception):
    """The bytes received are not an HTTP/1.1 request this server understands."""


def parse(buf: bytearray) -> tuple[str, str, bool, int] | None:
    """The request at the start of ``buf``: method, target, keep-alive and bytes used.

    None while the request is incomplete; BadRequest if it cannot be one.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise BadRequest("head too large")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"bad request line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise BadRequest(f"bad header {line!r}")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (parts[2] != "HTTP/1.0" or connection == "keep-alive")
    pos = end + 4
    if "chunked" in headers.get("transfer-encoding", "").lower():
        used = skip_chunked(buf, pos)
    else:
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise BadRequest("bad Content-Length")
        used = pos + int(length)
    if used is None or used > len(buf):
        return None
    return parts[0], parts[1], keep_alive, used


def skip_chunked(buf: bytearray, pos: int) -> int | None:
    """The end of a chunked body starting at ``pos`` (trailers included), or None if partial."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        except ValueError as exc:
            raise BadRequest("bad chunk size") from exc
        pos = eol + 2
        if size == 0:
            break
        if len(buf) < pos + size + 2:
            return None
        pos += size + 2
    if buf[pos : pos + 2] == b"\r\n":  # no trailers
        return pos + 2
    end = buf.find(b"\r\n\r\n", pos)
    return None if end < 0 else end + 4


def respond(status: int, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """A complete HTTP/1.1 response."""
    lines = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    if status not in NO_BODY:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def route(path: str) -> bytes | None:
    """The answer to a recorded request; None means: reset the connection."""
    if not path.startswith("/"):
        return respond(404, b"not found")
    if path.startswith("/ok"):
        return respond(200, b"ok")
    if path.startswith("/reset"):
        return None
    if path.startswith("/loop"):
        return respond(302, headers=[("Location", path)])
    parts = path.split("/", 3)
    if parts[1] == "redirect" and len(parts) == 4 and parts[2].isdigit():
        hops = int(parts[2])
        if hops == 0:
            return respond(200, b"ok")
        return respond(302, headers=[("Location", f"/redirect/{hops - 1}/{parts[3]}")])
    if parts[1] == "busy" and len(parts) >= 3 and parts[2].isdigit():  # /busy/<seconds>/...
        return respond(429, b"busy", headers=[("Retry-After", parts[2])])
    if parts[1] == "status" and len(parts) >= 3 and parts[2].isdigit():
        code = int(parts[2])
        if 200 <= code <= 599:
            return respond(code, b"" if code in NO_BODY else f"status {code}".encode())
    return respond(404, b"not found")


class Connection:
    """One client connection: bytes in with the kernel time of each read, bytes out."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.consumed = 0  # stream offset of inbox[0]
        self.reads: deque[tuple[int, float]] = deque()  # (stream offset after read, time)
        self.then: str | None = None  # "close" or "reset" once the outbox is flushed

    def receive(self) -> bool:
        """Read what is there; False once the peer has closed or reset."""
        try:
            data, ancillary, _, _ = self.sock.recvmsg(65536, 1024)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if not data:
            return False
        at = time.time()
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                seconds, nanoseconds = struct.unpack("qq", payload[:16])
                at = seconds + nanoseconds / 1e9
        self.inbox += data
        self.reads.append((self.consumed + len(self.inbox), at))
        return True

    def arrival(self) -> float:
        """The time of the read that delivered the first unconsumed byte."""
        while self.reads[0][0] <= self.consumed:
            self.reads.popleft()
        return self.reads[0][1]

    def flush(self) -> bool:
        """Send what can be sent; True when the outbox is empty."""
        try:
            sent = self.sock.send(self.outbox)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.outbox.clear()
            self.then = self.then or "close"
            return True
        del self.outbox[:sent]
        return not self.outbox


class Server:
    """The single-threaded selector loop of the external system."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # also turns stamping on
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.port: int = self.listener.getsockname()[1]
        self.recorded: list[tuple[float, str, str]] = []
        self.running = True

    def serve(self) -> None:
        """Print ``PORT <n>``, serve until SIGTERM or SIGINT, then close every socket."""
        wake_r, wake_w = socket.socketpair()
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        self.selector.register(wake_r, selectors.EVENT_READ)
        print(f"PORT {self.port}", flush=True)
        try:
            while self.running:
                for key, events in self.selector.select():
                    if key.fileobj is self.listener:
                        self.accept()
                    elif isinstance(key.data, Connection):
                        self.service(key.data, events)
        finally:
            signal.set_wakeup_fd(-1)
            for key in list(self.selector.get_map().values()):
                self.selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
            self.selector.close()
            wake_w.close()

    def stop(self, signum: int, frame: Any) -> None:
        self.running = False

    def accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.selector.register(sock, selectors.EVENT_READ, Connection(sock))

    def service(self, conn: Connection, events: int) -> None:
        if events & selectors.EVENT_READ and conn.then is None:
            if not conn.receive():
                self.drop(conn, reset=False)
                return
            self.handle(conn)
        if conn.outbox and not conn.flush():
            wanted = selectors.EVENT_WRITE | (selectors.EVENT_READ if conn.then is None else 0)
            self.selector.modify(conn.sock, wanted, conn)
            return
        if conn.then is not None:
            self.drop(conn, reset=conn.then == "reset")
        elif events & selectors.EVENT_WRITE:
            self.selector.modify(conn.sock, selectors.EVENT_READ, conn)

    def handle(self, conn: Connection) -> None:
        """Answer every complete request in the inbox, in order."""
        while conn.then is None and conn.inbox:
            try:
                parsed = parse(conn.inbox)
            except BadRequest as exc:
                conn.outbox += respond(400, str(exc).encode(), [("Connection", "close")])
                conn.then = "close"
                return
            if parsed is None:
                return
            method, target, keep_alive, used = parsed
            at = conn.arrival()
            del conn.inbox[:used]
            conn.consumed += used
            answer = self.answer(at, method, target)
            if answer is None:
                conn.then = "reset"
                return
            conn.outbox += answer
            if not keep_alive:
                conn.then = "close"

    def answer(self, at: float, method: str, target: str) -> bytes | None:
        """Answer a control path, or record the request and route it."""
        path = target.split("?", 1)[0]
        if path == "/__arrivals":  # ?since=<n>: those recorded after the first n
            since = int(target.partition("since=")[2] or 0)
            body = json.dumps(sorted(self.recorded[since:], key=lambda r: r[0])).encode()
            return respond(200, body, [("Content-Type", "application/json")])
        if path == "/__clear":
            self.recorded.clear()
            return respond(204)
        self.recorded.append((at, method, target))
        answer = route(path)
        if answer is not None and method == "HEAD":
            return answer[: answer.index(b"\r\n\r\n") + 4]
        return answer

    def drop(self, conn: Connection, *, reset: bool) -> None:
        """Close a connection; with ``reset``, by a TCP RST (linger on, zero seconds)."""
        self.selector.unregister(conn.sock)
        if reset:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.sock.close()


# ---- the test side ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request as the external system saw it: kernel receive time, method, path+query."""

    at: float
    method: str
    path: str


@dataclass(frozen=True, slots=True)
class ArrivalSystem:
    """A running external system: its address, and its record of arrivals."""

    base: str
    pid: int
    session: aiohttp.ClientSession  # closed by arrivals_system

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def url(self, path: str) -> str:
        return self.base + (path if path.startswith("/") else "/" + path)

    async def arrivals(self) -> list[Arrival]:
        async with self.session.get(self.url("/__arrivals")) as response:
            response.raise_for_status()
            return [Arrival(at, method, path) for at, method, path in await response.json()]

    async def clear(self) -> None:
        async with self.session.post(self.url("/__clear")) as response:
            response.raise_for_status()


@asynccontextmanager
async def arrivals_system() -> AsyncIterator[ArrivalSystem]:
    """Run this module as a server process for the duration of the block."""
    import aiohttp  # here, so that the server process needs only the standard library

    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=10)
        if not line.startswith(b"PORT "):
            raise RuntimeError(f"arrivals server did not start: {line!r}")
        async with aiohttp.ClientSession() as session:
            yield ArrivalSystem(f"http://127.0.0.1:{int(line.split()[1])}", process.pid, session)
    finally:
        with suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.communicate(), timeout=5)
        except TimeoutError:
            process.kill()
            await process.communicate()


@asynccontextmanager
async def busy_core() -> AsyncIterator[None]:
    """Another process keeps one core busy for the duration of the block."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "while True: pass")
    try:
        yield
    finally:
        with suppress(ProcessLookupError):
            process.kill()
        await process.wait()


if __name__ == "__main__":
    Server().serve()
