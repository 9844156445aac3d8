"""The gate against a real external system served on loopback.

The clock is fake, so budgets and retry waits move only when the test says; the HTTP
traffic is real. Waits on ``until`` are for I/O to happen, never for time to pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from conftest import ORG, SANDBOX, deploy
from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.outcomes import ErrorKind, Outcome
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock


@dataclass
class System:
    """A scriptable external system: each path answers from a list of scripted replies."""

    base: str = ""
    hits: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    release: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    disconnected: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        hit = self.hits[name] = self.hits.get(name, 0) + 1
        if name == "flaky" and hit <= 2:
            return web.Response(status=500, text="boom")
        if name == "reset" and request.transport is not None:
            request.transport.close()
            return web.Response(status=500)
        if name == "missing":
            return web.Response(status=404, text="no such thing")
        if name == "later" and hit == 1:
            return web.Response(status=503, headers={"Retry-After": request.query["after"]})
        if name == "hold":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await self.release.acquire()
            except asyncio.CancelledError:
                self.disconnected += 1
                raise
            finally:
                self.in_flight -= 1
        return web.json_response({"path": name}, headers={"X-Seen": str(hit)})


@pytest.fixture
async def system() -> AsyncIterator[System]:
    state = System()
    app = web.Application(handler_args={"handler_cancellation": True})
    app.router.add_route("*", "/{name}", state.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    for _ in range(64):
        state.release.release()
    await runner.cleanup()


@pytest.fixture
async def gate(clock: FakeClock) -> AsyncIterator[Gate]:
    settings = Settings(allow_loopback=True, retry_schedule=(0.0, 0.0, 0.0))
    async with Gate.open(None, settings=settings, clock=clock) as gate:
        yield gate


async def until(condition: Callable[[], bool]) -> None:
    """Wait for real I/O to make ``condition`` true (fails after 5 s of no progress)."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 -- the conditions watch a server, not an event
            await asyncio.sleep(0.001)


def args(system: System, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "org": ORG, "sandbox": SANDBOX, "journey": "j", "service": "action",
        "method": "POST", "url": f"{system.base}/{name}", "body": '{"a": 1}', **extra,
    }  # fmt: skip


async def test_success_returns_the_response(gate: Gate, system: System) -> None:
    """A 2xx ends the call with the response's status, headers and body."""
    result = await gate.call(**args(system, "ok"))
    assert (Outcome.SUCCESS, 1) == (result.outcome, result.attempts)
    assert result.response is not None
    assert (200, b'{"path": "ok"}') == (result.response.status, result.response.body)
    assert "1" == result.response.headers["X-Seen"]


async def test_server_errors_are_retried(gate: Gate, system: System) -> None:
    """Two 500s, then a 200: three attempts, success, the 500 as origin error."""
    result = await gate.call(**args(system, "flaky"))
    assert (Outcome.SUCCESS, 3, 3) == (result.outcome, result.attempts, system.hits["flaky"])
    assert result.origin_error is not None
    assert 500 == result.origin_error.status


async def test_resets_end_as_network_error_after_three_retries(gate: Gate, system: System) -> None:
    """A connection reset on every attempt: four attempts, then network_error."""
    result = await gate.call(**args(system, "reset"))
    assert (Outcome.NETWORK_ERROR, 4, "internalError") == (
        result.outcome, result.attempts, result.jo_status_code,
    )  # fmt: skip
    assert result.error is not None
    assert ErrorKind.NETWORK is result.error.kind


async def test_not_found_is_not_retried(gate: Gate, system: System) -> None:
    """404 ends the call at once as http_error, its response kept."""
    result = await gate.call(**args(system, "missing"))
    assert (Outcome.HTTP_ERROR, 1, "http_404") == (
        result.outcome, result.attempts, result.jo_status_code,
    )  # fmt: skip
    assert result.response is not None
    assert b"no such thing" == result.response.body


async def test_retry_after_is_honoured(gate: Gate, system: System, clock: FakeClock) -> None:
    """A 503 with Retry-After: 2 is retried exactly 2 s later."""
    task = asyncio.create_task(gate.call(**args(system, "later") | {
        "url": f"{system.base}/later?after=2"}))  # fmt: skip
    await until(lambda: system.hits.get("later") == 1)
    await clock.advance(1.999)
    assert not task.done()
    assert 1 == system.hits["later"]
    await clock.advance(0.001)
    await until(task.done)
    result = task.result()
    assert (Outcome.SUCCESS, 2, 2) == (result.outcome, result.attempts, system.hits["later"])


async def test_retry_after_beyond_the_budget_ends_with_the_error(
    gate: Gate, system: System
) -> None:
    """A Retry-After longer than the budget left ends the call with the 503 at once."""
    result = await gate.call(**args(system, "later", timeout_seconds=5) | {
        "url": f"{system.base}/later?after=60"})  # fmt: skip
    assert (Outcome.HTTP_ERROR, 1, "http_503") == (
        result.outcome, result.attempts, result.jo_status_code,
    )  # fmt: skip


async def test_slow_attempt_is_cancelled_at_the_deadline(
    gate: Gate, system: System, clock: FakeClock
) -> None:
    """An attempt still running when the budget ends is cancelled: the server sees the
    client go away, and the call is timedout."""
    task = asyncio.create_task(gate.call(**args(system, "hold", timeout_seconds=3)))
    await until(lambda: system.in_flight == 1)
    await clock.advance(3)
    await until(lambda: task.done() and system.disconnected == 1)
    result = task.result()
    assert (Outcome.TIMEDOUT, 1, 3000.0) == (result.outcome, result.attempts,
                                             result.execution_ms)  # fmt: skip


async def test_connection_limit_bounds_attempts_in_flight(gate: Gate, system: System) -> None:
    """maxHttpConnections 2: never more than two attempts reach the system at once."""
    service = {"rating": {"maxCallsCount": 100, "periodInMs": 1000}, "maxHttpConnections": 2}
    payload = {"url": f"{system.base}/*", "methods": ["POST"], "services": {"action": service}}
    await deploy(gate, ConfigKind.CAPPING, payload)
    tasks = [asyncio.create_task(gate.call(**args(system, "hold"))) for _ in range(6)]
    for remaining in range(6, 0, -1):
        await until(lambda r=remaining: system.in_flight == min(2, r))  # type: ignore[misc]
        system.release.release()
    results = await asyncio.gather(*tasks)
    assert {Outcome.SUCCESS} == {r.outcome for r in results}
    assert 2 == system.max_in_flight


async def test_loopback_is_blocked_outside_development_mode(
    clock: FakeClock, system: System
) -> None:
    """Without the development setting, a loopback system is refused before any attempt."""
    async with Gate.open(None, clock=clock) as strict:
        by_ip = await strict.call(**args(system, "ok"))
        port = system.base.rsplit(":", 1)[1]
        settings = Settings(allowed_ports=frozenset({int(port)}))
    async with Gate.open(None, clock=clock, settings=settings) as by_name_gate:
        by_name = await by_name_gate.call(**args(system, "ok") | {
            "url": f"http://localhost:{port}/ok"})  # fmt: skip
    assert (Outcome.BLOCKED, Outcome.BLOCKED) == (by_ip.outcome, by_name.outcome)
    assert (0, 1) == (by_ip.attempts, by_name.attempts)
    assert {} == system.hits
