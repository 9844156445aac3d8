"""The queue at scale through the service: ``POST /v1/calls`` of ``sluicegate serve``.

The service runs as ``sluicegate serve --dev`` in a process of its own (:func:`served`),
so its RSS, peak and CPU are read from outside it, from ``/proc/<pid>``; its queue depth
comes from ``GET /metrics``. The benchmark talks to it as a client would, with the
development key it prints (:class:`_Api`). :func:`side` queues the calls, stops it with
SIGTERM, starts a new one on the same data directory and judges the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from arrivals import Recorder
from machine import Peak, cpu_seconds, rss
from queue_results import (
    JOURNEY,
    ORG,
    QUIET,
    SANDBOX,
    Enqueue,
    Memory,
    Restart,
    Side,
    drain,
    head,
    read_store,
    rule,
    warmup,
)

CLIENTS = 128  # concurrent HTTP clients of the service
ADOBE = "/journey/orchestration"
SERVE = [sys.executable, "-m", "sluicegate.cli", "serve", "--dev"]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 120.0
_T = TypeVar("_T")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class _Served:
    """``sluicegate serve --dev`` in a process of its own, and what it printed."""

    base: str
    process: asyncio.subprocess.Process
    started: float  # time.time() just before it was started
    lines: list[str] = field(default_factory=list)
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    stop_seconds: float = 0.0

    @property
    def token(self) -> str | None:
        """The development key it printed, if it made one."""
        return next((w for line in self.lines for w in line.split() if w.startswith("sg_")), None)

    async def read(self) -> None:  # always, so that a full pipe never blocks the server
        assert self.process.stdout is not None
        while line := (await self.process.stdout.readline()).decode():
            self.lines.append(line)
            if "sluicegate serving on" in line:
                self.listening.set()

    async def stop(self) -> None:
        """SIGTERM (a graceful stop), and its duration; SIGKILL after STOP_TIMEOUT."""
        if self.process.returncode is not None:
            return
        stopping = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise RuntimeError("sluicegate serve did not stop on SIGTERM") from None
        self.stop_seconds = time.perf_counter() - stopping


@asynccontextmanager
async def served(data: Path, *options: str) -> AsyncIterator[_Served]:
    """Start ``sluicegate serve --dev`` on ``data`` with ``options`` (at once: wait for it
    yourself); stop it at the end of the block, whatever happens."""
    port = _free_port()
    started = time.time()
    process = await asyncio.create_subprocess_exec(
        *SERVE, "--port", str(port), "--data-dir", str(data), *options,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    server = _Served(f"http://127.0.0.1:{port}", process, started)
    reader = asyncio.create_task(server.read())
    try:
        yield server
        await server.stop()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reader
    if process.returncode != 0:
        raise RuntimeError(
            f"sluicegate serve exited {process.returncode}:\n{''.join(server.lines)}"
        )


@dataclass(frozen=True, slots=True)
class _Api:
    http: aiohttp.ClientSession
    base: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "x-gw-ims-org-id": ORG,
                "x-sandbox-name": SANDBOX}  # fmt: skip

    async def post(self, path: str, body: Any = None) -> tuple[int, bytes]:
        async with self.http.post(self.base + path, json=body, headers=self.headers) as r:
            return r.status, await r.read()

    async def deploy(self, system: str) -> None:
        status, text = await self.post(f"{ADOBE}/throttlingConfigs", rule(system))
        if status != 200:
            raise RuntimeError(f"creating the throttling config: {status} {text!r}")
        status, text = await self.post(
            f"{ADOBE}/throttlingConfigs/{json.loads(text)['uid']}/deploy"
        )
        if status != 204:
            raise RuntimeError(f"deploying the throttling config: {status} {text!r}")

    async def enqueue(self, system: str, numbers: Iterable[int]) -> None:
        """POST /v1/calls for each number, from CLIENTS concurrent clients, not waiting."""
        shared = iter(numbers)

        async def client() -> None:
            for n in shared:
                body = {"journeyId": JOURNEY, "service": "action", "waitSeconds": 0,
                        "request": {"method": "POST", "url": f"{system}/ok/{n}"}}  # fmt: skip
                status, text = await self.post("/v1/calls", body)
                if status not in (200, 202):
                    raise RuntimeError(f"POST /v1/calls answered {status}: {text!r}")

        await asyncio.gather(*(client() for _ in range(CLIENTS)))

    async def depth(self) -> int | None:
        """Calls waiting in the org's queues (``GET /metrics``); None until it answers."""
        try:
            async with self.http.get(f"{self.base}/metrics", headers=self.headers) as r:
                if r.status != 200:
                    return None
                text = await r.text()
        except aiohttp.ClientConnectionError:
            return None
        lines = (line.split() for line in text.splitlines())
        return sum(
            int(float(p[-1])) for p in lines if p and p[0].startswith("sluicegate_queue_depth")
        )


async def _until(
    check: Callable[[], Awaitable[_T | None]], what: str, seconds: float = START_TIMEOUT
) -> _T:
    """Poll ``check()`` every 5 ms until it returns something other than None."""
    try:
        async with asyncio.timeout(seconds):
            while (found := await check()) is None:  # noqa: ASYNC110 -- another process
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise RuntimeError(f"timed out waiting for {what}") from None
    return found


async def side(system: Recorder, calls: int, seconds: float) -> Side:
    """Queue ``calls`` calls to ``system`` through one service process, stop it, start
    another on the same directory and judge ``seconds`` of the drain."""
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    with tempfile.TemporaryDirectory(prefix="sluicegate-bench-") as tmp:
        data = Path(tmp) / "data"
        async with aiohttp.ClientSession(connector=connector) as http:
            before = len(await system.arrivals())
            async with served(data) as server:
                await asyncio.wait_for(server.listening.wait(), START_TIMEOUT)
                assert server.token is not None, "no development key printed"
                api, pid = _Api(http, server.base, server.token), server.process.pid
                async with Peak(pid) as peak:
                    await api.deploy(system.base)
                    rss_open = rss(pid)
                    first = warmup(calls)
                    await api.enqueue(system.base, range(first))
                    rss_before, queued_before = rss(pid), await _until(api.depth, "a depth")
                    wall, cpu = time.perf_counter(), cpu_seconds(pid)
                    await api.enqueue(system.base, range(first, calls))
                    wall, cpu = time.perf_counter() - wall, cpu_seconds(pid) - cpu
                    rss_after, queued_after = rss(pid), await _until(api.depth, "a depth")
            stopped = time.time()
            stored = read_store(data, head=head(seconds))
            await asyncio.sleep(max(0.0, stopped + QUIET - time.time()))
            earlier = (await system.arrivals())[before:]
            mark = before + len(earlier)

            async def first_arrival() -> float | None:
                found = await system.arrivals(mark)
                return min(at for at, _ in found) if found else None

            async with served(data) as again:
                api = _Api(http, again.base, api.token)
                await _until(api.depth, "the restarted service to answer")
                answered = time.time()
                resident = rss(again.process.pid)
                first_at = await _until(first_arrival, "the first call after the restart")
                await asyncio.sleep(max(0.0, first_at + seconds + 0.5 - time.time()))
            later = (await system.arrivals())[mark:]
    return Side(
        name="POST /v1/calls, sluicegate serve",
        calls=calls,
        concurrency=CLIENTS,
        enqueue=Enqueue(calls=calls - first, seconds=wall, cpu_seconds=cpu),
        memory=Memory(
            rss_open=rss_open,
            rss_before=rss_before,
            rss_after=rss_after,
            peak=peak.highest,
            queued_before=queued_before,
            queued_after=queued_after,
            stored=stored.calls,
            disk=stored.disk,
        ),
        restart=Restart(
            stop_seconds=server.stop_seconds,
            queued=stored.calls,
            ready_seconds=answered - again.started,
            start_seconds=None,
            open_seconds=None,
            first_seconds=first_at - again.started,
            rss=resident,
        ),
        drain=drain(earlier, later, stored.rank, seconds),
    )
