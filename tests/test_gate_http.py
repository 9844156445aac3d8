"""The gate against a real external system served on loopback.

The clock is fake, so budgets and retry waits move only when the test says; the HTTP
traffic is real. Waits on ``until`` are for I/O to happen, never for time to pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.loopback import System, serve_system, until

from conftest import ORG, SANDBOX, deploy
from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.outcomes import ErrorKind, Outcome
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock


@pytest.fixture
async def system(clock: FakeClock) -> AsyncIterator[System]:
    async with serve_system(clock) as served:
        yield served


@pytest.fixture
async def gate(clock: FakeClock) -> AsyncIterator[Gate]:
    settings = Settings(allow_loopback=True, retry_schedule=(0.0, 0.0, 0.0))
    async with Gate.open(None, settings=settings, clock=clock) as gate:
        yield gate


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


async def test_retry_after_holds_every_call_to_the_endpoint(
    gate: Gate, system: System, clock: FakeClock
) -> None:
    """A 503 with Retry-After: 2 pauses the endpoint: another call to it, made 1 s
    later, is sent only when the 2 s are over (inside its budget), with the retry."""
    first = asyncio.create_task(gate.call(**args(system, "later") | {
        "url": f"{system.base}/later?after=2"}))  # fmt: skip
    await until(lambda: system.hits.get("later") == 1)
    await clock.advance(1.0)
    second = asyncio.create_task(gate.call(**args(system, "ok")))
    await clock.advance(0.999)
    assert (None, 1) == (system.hits.get("ok"), system.hits["later"])
    await clock.advance(0.001)
    await until(lambda: first.done() and second.done())
    assert [Outcome.SUCCESS] * 2 == [first.result().outcome, second.result().outcome]
    assert (1, 2) == (system.hits["ok"], system.hits["later"])


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
    """Without the development setting, a loopback system is refused before any attempt,
    by its IP-literal URL or when its name resolves: no attempt is reported, no slot kept."""
    async with Gate.open(None, clock=clock) as strict:
        by_ip = await strict.call(**args(system, "ok"))
        port = system.base.rsplit(":", 1)[1]
        settings = Settings(allowed_ports=frozenset({int(port)}))
    async with Gate.open(None, clock=clock, settings=settings) as by_name_gate:
        by_name = await by_name_gate.call(**args(system, "ok") | {
            "url": f"http://localhost:{port}/ok"})  # fmt: skip
    assert (Outcome.BLOCKED, Outcome.BLOCKED) == (by_ip.outcome, by_name.outcome)
    # Refused by its URL, or by the address it resolves to: either way nothing left.
    assert (0, 0, 0) == (by_ip.attempts, by_name.attempts, by_name.slots)
    assert {} == system.hits


async def test_each_redirect_hop_is_an_attempt_with_a_slot(gate: Gate, system: System) -> None:
    """A 302 is followed by the engine: two requests, two attempts, two slots, no retry."""
    result = await gate.call(**args(system, "hop"))
    assert (Outcome.SUCCESS, 2, 0, 2) == (result.outcome, result.attempts, result.retries,
                                          result.slots)  # fmt: skip
    assert {"hop": 1, "ok": 1} == system.hits


async def test_a_redirect_loop_ends_at_the_last_hop_and_is_not_retried(
    gate: Gate, system: System
) -> None:
    """A redirect loop is followed 5 times, then the last 302 ends the call: 6 requests,
    each an attempt, and no retry of a 3xx."""
    result = await gate.call(**args(system, "loop"))
    assert (Outcome.HTTP_ERROR, "http_302", 6, 0) == (
        result.outcome, result.jo_status_code, result.attempts, result.retries,
    )  # fmt: skip
    assert {"loop": 6} == system.hits


async def test_a_redirect_to_a_refused_url_ends_blocked(gate: Gate, system: System) -> None:
    """A hop the egress policy refuses is not made: the call ends blocked after one request."""
    result = await gate.call(**args(system, "away"))
    assert (Outcome.BLOCKED, 1, 1) == (result.outcome, result.attempts, result.slots)


async def test_a_redirect_hop_without_a_capping_slot_is_capped(gate: Gate, system: System) -> None:
    """Under a cap of one request per second, the first request takes the slot and its
    redirect hop finds none: the call is capped, the hop never sent."""
    await deploy(gate, ConfigKind.CAPPING, {
        "url": f"{system.base}/*", "methods": ["POST", "GET"],
        "services": {"action": {"rating": {"maxCallsCount": 1, "periodInMs": 1000}}},
    })  # fmt: skip
    result = await gate.call(**args(system, "hop"))
    assert (Outcome.CAPPED, 1, 1) == (result.outcome, result.attempts, result.slots)
    assert {"hop": 1} == system.hits


async def test_every_request_carries_the_call_id_as_idempotency_key(
    gate: Gate, system: System
) -> None:
    """Each attempt of a call sends the same Idempotency-Key: the call's id."""
    seen: list[str] = []
    system.on_request = lambda request: seen.append(request.headers.get("Idempotency-Key", ""))
    result = await gate.call(**args(system, "flaky"))
    assert [result.call_id] * 3 == seen
