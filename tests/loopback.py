"""Loopback parts the tests share: scriptable external systems, free ports, waits for I/O.

:class:`System` answers each path in its own way (see :meth:`System.handle`); answers that
depend on time wait on the test's :class:`~sluicegate.testing.FakeClock`, so no test sleeps
for time to pass. :func:`until` and :func:`eventually` wait only for real I/O to happen.
(``tests/arrivals.py`` is the other external system: one that records arrival times as the
kernel saw them, in a process of its own.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sluicegate.testing import FakeClock


@dataclass
class System:
    """What the system saw: hits per path, bodies, deliveries, callbacks received."""

    clock: FakeClock
    base: str = ""
    hits: dict[str, int] = field(default_factory=dict)
    delivered: list[int] = field(default_factory=list)
    callbacks: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    disconnected: int = 0
    release: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    on_request: Callable[[web.Request], object] = lambda request: None
    connections: Callable[[], int] = lambda: 0  # connections open to it right now

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        hit = self.hits[name] = self.hits.get(name, 0) + 1
        self.on_request(request)
        match name:
            case "ok":
                return web.json_response({"path": name}, headers={"X-Seen": str(hit)})
            case "echo":
                body = await request.text()
                return web.json_response({"body": body, "contentType": request.content_type})
            case "text":
                return web.Response(text="héllo", content_type="text/plain")
            case "binary":
                return web.Response(body=b"\x00\xff", content_type="application/octet-stream")
            case "flaky" if hit <= 2:
                return web.Response(status=500, text="boom")
            case "reset" if request.transport is not None:
                request.transport.close()
                return web.Response(status=500)
            case "missing":
                return web.Response(status=404, text="no such thing")
            case "hop":
                return web.Response(status=302, headers={"Location": "/ok"})
            case "loop":
                return web.Response(status=302, headers={"Location": "/loop"})
            case "away":
                return web.Response(status=302, headers={"Location": "http://10.0.0.1/"})
            case "later" if hit == 1:
                return web.Response(status=503, headers={"Retry-After": request.query["after"]})
            case "slow500" if hit == 1:
                await self.clock.sleep(2)  # answers 500 after 2 s of the test's clock
                return web.Response(status=500, text="late boom")
            case "hold":
                await self._hold()
            case "cb":
                self.callbacks.append((dict(request.headers), await request.json()))
            case "flakycb" if hit == 1:
                return web.Response(status=500, text="try later")
            case "flakycb":
                self.callbacks.append((dict(request.headers), await request.json()))
        return web.json_response({"path": name}, headers={"X-Seen": str(hit)})

    async def _hold(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.release.acquire()
        except asyncio.CancelledError:
            self.disconnected += 1
            raise
        finally:
            self.in_flight -= 1

    async def deliver(self, request: web.Request) -> web.Response:
        self.delivered.append(int(request.match_info["n"]))
        return web.Response(text="ok")

    async def held_callback(self, request: web.Request) -> web.Response:
        """A callback receiver that holds its first request, then accepts the next ones."""
        hit = self.hits["heldcb"] = self.hits.get("heldcb", 0) + 1
        if hit == 1:
            await self._hold()
        self.callbacks.append((dict(request.headers), json.loads(await request.read())))
        return web.Response(status=204)


@asynccontextmanager
async def serve_system(clock: FakeClock) -> AsyncIterator[System]:
    """Serve a :class:`System` on 127.0.0.1, an ephemeral port, for the block."""
    state = System(clock=clock)
    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_route("POST", "/call/{n}", state.deliver)
    app.router.add_route("POST", "/heldcb", state.held_callback)
    app.router.add_route("*", "/{name}", state.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    server = runner.server
    assert server is not None
    state.connections = lambda: len(server.connections)
    try:
        yield state
    finally:
        for _ in range(64):
            state.release.release()
        await runner.cleanup()


@asynccontextmanager
async def serve_ok() -> AsyncIterator[str]:
    """An external system on 127.0.0.1 that answers 200 to anything; yields its base URL."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async with _serving(ok) as base:
        yield base


@asynccontextmanager
async def serve_recording() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """:func:`serve_ok` that keeps every request (read its headers and path; the body is
    not read); yields its base URL and the requests in order of arrival."""
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"ok": True})

    async with _serving(record) as base:
        yield base, seen


@asynccontextmanager
async def _serving(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    """Wait for real I/O to make ``condition`` true (fails after ``seconds``)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 -- the conditions watch servers, not an event
            await asyncio.sleep(0.001)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5) -> None:
    """Like :func:`until`, for a condition that needs I/O to be checked (a request)."""
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 -- each check is a request
            await asyncio.sleep(0.001)


SLUICEGATE = [sys.executable, "-m", "sluicegate.cli"]


@dataclass
class Served:
    """``sluicegate serve --dev`` running in a process of its own, and what it printed."""

    base: str
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    @property
    def token(self) -> str | None:
        """The development key it printed, if it made one."""
        return next((w for line in self.lines for w in line.split() if w.startswith("sg_")), None)

    def kill(self) -> None:
        """SIGKILL: the process dies with whatever it holds in memory."""
        self.process.kill()


@asynccontextmanager
async def sluicegate_serve(
    data_dir: Path, *args: str, env: dict[str, str] | None = None, within: Sequence[str] = (),
    dev: bool = True,
) -> AsyncIterator[Served]:  # fmt: skip
    """Run ``sluicegate serve --dev`` (``--create`` if not ``dev``) on ``data_dir`` for the
    block (extra ``args`` after, extra environment variables ``env``, the command run by
    ``within`` if given), once it is serving. It listens on a port the kernel picks as it
    binds, read from its log: a port found free before the process starts may be taken
    meanwhile. At the end: SIGTERM, then SIGKILL if it has not exited in 20 s."""
    process = await asyncio.create_subprocess_exec(
        *within, *SLUICEGATE, "serve", "--dev" if dev else "--create", "--port", "0",
        "--data-dir", str(data_dir),
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )  # fmt: skip
    served = Served("", process)
    ready = asyncio.Event()

    async def read() -> None:  # always, so that a full pipe never blocks the server
        assert process.stdout is not None
        while line := (await process.stdout.readline()).decode():
            served.lines.append(line)
            if found := re.search(r"serving on (http://127\.0\.0\.1:\d+)", line):
                served.base = found[1]
                ready.set()

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        yield served
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        await reader


#: Where Adobe's configuration API lives.
ADOBE = "/journey/orchestration"


@dataclass
class Api:
    """The HTTP API of a :func:`sluicegate_serve` with its development key (org ``demo``,
    sandbox ``prod``), or with ``token`` of ``org``."""

    served: Served
    http: aiohttp.ClientSession
    token: str | None = None  # another key than the development key, and its org
    org: str = "demo"

    @property
    def headers(self) -> dict[str, str]:
        token = self.token or self.served.token
        return {"Authorization": f"Bearer {token}", "x-gw-ims-org-id": self.org,
                "x-sandbox-name": "prod"}  # fmt: skip

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.post(self.served.base + path, json=body, headers=self.headers) as r:
            return r.status, (await r.json() if r.content_length else None)

    async def deploy(self, kind: str, payload: dict[str, Any]) -> None:
        status, created = await self.post(f"{ADOBE}/{kind}", payload)
        assert 200 == status, created
        assert (204, None) == await self.post(f"{ADOBE}/{kind}/{created['uid']}/deploy")

    async def call(self, url: str, *, method: str = "POST", wait: float = 0) -> dict[str, Any]:
        body = {"journeyId": "load", "service": "action", "waitSeconds": wait,
                "request": {"method": method, "url": url}}  # fmt: skip
        status, answer = await self.post("/v1/calls", body)
        assert status in (200, 202), answer
        return dict(answer)
