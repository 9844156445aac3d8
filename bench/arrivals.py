"""The external system of the queue benchmark: records when each numbered call arrived.

Run as a script, it binds 127.0.0.1 on a free port, prints the port on one line and
serves until it is terminated. ``POST /q/<n>`` (any method) is recorded as call ``n`` and
answered 200; ``GET /arrivals?since=<i>`` returns the records from the ``i``-th on, as
JSON ``[[time, n], ...]`` in the order they were read.

Arrival times are the kernel's receive timestamps (``SO_TIMESTAMPNS``, CLOCK_REALTIME,
comparable with ``time.time()`` in other processes), not the time this process got round
to reading its sockets: whether a rate held is judged by when requests reached the
external system, and a server scheduled late on a busy machine would otherwise bunch them
together. Only the standard library is used, on one thread with a selector.

:func:`recorder` starts the process, yields a :class:`Recorder` and stops it at the end.
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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
START_TIMEOUT = 10.0
HERE = Path(__file__).resolve()
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def _request_end(buf: bytearray) -> tuple[str, int] | None:
    """The target of the complete request at the start of ``buf`` and its length in bytes,
    or None while it is incomplete (Content-Length or chunked bodies)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = bytes(buf[:head_end]).decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    pos = head_end + 4
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        end = pos + int(headers.get("content-length", "0"))
        return (target, end) if end <= len(buf) else None
    while (eol := buf.find(b"\r\n", pos)) >= 0:  # chunk sizes, then an empty trailer
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2 + (size + 2 if size else 0)
        if size == 0:
            return (target, pos + 2) if buf[pos : pos + 2] == b"\r\n" else None
    return None


class _Connection:
    """One client connection: what it sent, and the kernel time of each read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbox = bytearray()
        self.consumed = 0  # stream offset of inbox[0]
        self.reads: deque[tuple[int, float]] = deque()  # (stream offset after read, time)

    def receive(self) -> bool:
        """Read what is there; False once the peer has closed."""
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
        """The time of the read that delivered the first byte not consumed yet."""
        while self.reads[0][0] <= self.consumed:
            self.reads.popleft()
        return self.reads[0][1]


class _Server:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.recorded: list[tuple[float, int]] = []
        self.running = True

    def serve(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        print(self.listener.getsockname()[1], flush=True)
        while self.running:
            with suppress(InterruptedError):
                for key, _ in self.selector.select(timeout=0.2):
                    if key.fileobj is self.listener:
                        self._accept()
                    else:
                        self._service(key.data)

    def _stop(self, signum: int, frame: object) -> None:
        self.running = False

    def _accept(self) -> None:
        with suppress(BlockingIOError, InterruptedError):
            while True:
                sock, _ = self.listener.accept()
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.selector.register(sock, selectors.EVENT_READ, _Connection(sock))

    def _service(self, conn: _Connection) -> None:
        if not conn.receive():
            self.selector.unregister(conn.sock)
            conn.sock.close()
            return
        out = bytearray()
        while (found := _request_end(conn.inbox)) is not None:
            target, used = found
            out += self._answer(conn.arrival(), target)
            del conn.inbox[:used]
            conn.consumed += used
        if out:  # answers are small: the socket's buffer takes them whole
            conn.sock.setblocking(True)
            conn.sock.sendall(out)
            conn.sock.setblocking(False)

    def _answer(self, at: float, target: str) -> bytes:
        path, _, query = target.partition("?")
        if path.startswith("/q/") and path[3:].isdigit():
            self.recorded.append((at, int(path[3:])))
            return _OK
        if path == "/arrivals":
            since = int(query.removeprefix("since=") or 0)
            body = json.dumps(self.recorded[since:]).encode()
            return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + (
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
        return _NOT_FOUND


@dataclass(frozen=True, slots=True)
class Recorder:
    """A running external system: its base URL, and its record of arrivals."""

    base: str
    session: aiohttp.ClientSession

    async def arrivals(self, since: int = 0) -> list[tuple[float, int]]:
        """``(kernel receive time, call number)`` of every call from the ``since``-th on."""
        async with self.session.get(f"{self.base}/arrivals?since={since}") as response:
            response.raise_for_status()
            return [(at, n) for at, n in await response.json()]


@asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    """Run this module as a server process for the block; stop it (and wait) at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)).strip()
        if not line.isdigit():
            raise RuntimeError(f"the arrivals recorder did not start (said {line!r})")
        async with aiohttp.ClientSession() as session:
            yield Recorder(f"http://127.0.0.1:{int(line)}", session)
    finally:
        with suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), START_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


if __name__ == "__main__":
    _Server().serve()
