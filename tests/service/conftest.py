"""The real service on loopback: uvicorn serving the app, an aiohttp client talking to it.

``start_service(data_dir, ...)`` starts one (stopped at the end of the test, or earlier
with ``await running.stop()`` to test a restart); ``running.key(org, role)`` makes a key
and returns the headers that act with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from tests.loopback import System, serve_system

from sluicegate.clock import Clock
from sluicegate.service.app import create_app
from sluicegate.service.runtime import Runtime, open_runtime
from sluicegate.service.tenants import Role
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock
from sluicegate.transport import Transport


@dataclass
class Running:
    """A service started by a test."""

    base: str
    runtime: Runtime
    http: aiohttp.ClientSession
    _stop: Callable[[], Awaitable[None]]
    stopped: bool = field(default=False)

    async def key(
        self, org: str = "acme", role: str = "admin", sandbox: str = "prod"
    ) -> dict[str, str]:
        """Headers acting with a new key of ``role`` for ``org`` in ``sandbox``."""
        token = await self.runtime.tenants.create_key(org=org, role=Role(role))
        return {"Authorization": f"Bearer {token}", "x-api-key": "ignored",
                "x-gw-ims-org-id": org, "x-sandbox-name": sandbox}  # fmt: skip

    async def request(self, method: str, path: str, headers: dict[str, str], json: Any = None,
                      **kwargs: Any) -> tuple[int, Any]:  # fmt: skip
        """``(status, parsed JSON body or None)`` of one request."""
        async with self.http.request(method, self.base + path, headers=headers, json=json,
                                     **kwargs) as response:  # fmt: skip
            text = await response.text()
            body = None
            if text and response.content_type == "application/json":
                body = await response.json()
            return response.status, body

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self._stop()


StartService = Callable[..., Awaitable[Running]]
#: A throttling window, in seconds of the test's clock: a slot is held its second and the
#: guard band after its request left.
WINDOW = 1 + Settings().send_guard_ms / 1000


@pytest.fixture
async def start_service(tmp_path: Path) -> AsyncIterator[StartService]:
    stack = contextlib.AsyncExitStack()
    started: list[Running] = []

    async def start(
        data_dir: Path | None = None,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        settings: Settings | None = None,
        dev: bool = True,
    ) -> Running:
        inner = contextlib.AsyncExitStack()
        runtime = await inner.enter_async_context(
            open_runtime(
                data_dir or tmp_path / "data",
                dev=dev,
                clock=clock,
                transport=transport,
                settings=settings,
            )
        )
        config = uvicorn.Config(create_app(runtime), host="127.0.0.1", port=0, lifespan="off",
                                log_level="warning", access_log=False)  # fmt: skip
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        async with asyncio.timeout(10):
            while not server.started:  # noqa: ASYNC110 -- uvicorn exposes no event for this
                await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        http = await inner.enter_async_context(aiohttp.ClientSession())

        async def stop() -> None:
            server.should_exit = True
            await task
            await inner.aclose()

        running = Running(base=f"http://127.0.0.1:{port}", runtime=runtime, http=http,
                          _stop=stop)  # fmt: skip
        started.append(running)
        return running

    async with stack:
        yield start
        for running in reversed(started):
            await running.stop()


@pytest.fixture
async def system(clock: FakeClock) -> AsyncIterator[System]:
    """An external system on loopback, on the test's clock (tests.loopback.System)."""
    async with serve_system(clock) as system:
        yield system


@pytest.fixture
async def service(start_service: StartService, clock: FakeClock) -> Running:
    """A service on the test's clock, in development mode."""
    return await start_service(clock=clock)
