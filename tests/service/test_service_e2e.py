"""The seed's examples end to end: the real service, rules deployed through the Adobe
routes, calls through ``/v1/calls``, external systems on loopback, time on a FakeClock.

Retries are made without delay (``retry_schedule`` 0) where the test is about slots and
budgets rather than the delay schedule, which the gate's own tests cover.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from tests.loopback import System, until
from tests.service.conftest import WINDOW, Running, StartService
from tests.service.test_calls_api import call, deploy_throttling

from sluicegate.settings import Settings
from sluicegate.testing import FakeClock

ADOBE = "/journey/orchestration"
NO_DELAY = Settings(allow_loopback=True, retry_schedule=(0.0, 0.0, 0.0))


async def deploy_capping(
    service: Running, headers: dict[str, str], url: str, count: int, period_ms: int
) -> None:
    """Create and deploy a capping config for custom actions through the Adobe route."""
    rating = {"maxCallsCount": count, "periodInMs": period_ms}
    payload = {"url": url, "methods": ["POST"], "services": {"action": {"rating": rating}}}
    status, created = await service.request("POST", f"{ADOBE}/endpointConfigs", headers, payload)
    assert 200 == status, created
    uid = created["uid"]
    assert 204 == (await service.request("POST", f"{ADOBE}/endpointConfigs/{uid}/deploy",
                                         headers))[0]  # fmt: skip


async def post(service: Running, headers: dict[str, str], body: dict[str, Any]) -> Any:
    status, answer = await service.request("POST", "/v1/calls", headers, body)
    assert status in (200, 202), answer
    return answer


async def test_capping_slots_are_shared_by_every_journey(
    start_service: StartService, clock: FakeClock, system: System
) -> None:
    """5 calls per 1000 ms: one journey takes the 5 slots, another journey's call is
    capped at once (no attempt); once the window has moved, it gets a slot again."""
    service = await start_service(clock=clock)
    headers = await service.key()
    await deploy_capping(service, headers, system.url("*"), 5, 1000)
    busy = [await post(service, headers, call(system, "ok", journeyId="busy")) for _ in range(5)]
    other = await post(service, headers, call(system, "ok", journeyId="other"))
    assert ({"success"}, 5) == ({a["outcome"] for a in busy}, system.hits["ok"])
    assert ("capped", "capped", 0, None) == (
        other["outcome"], other["joStatusCode"], other["attempts"], other["response"]
    )  # fmt: skip

    await clock.advance(WINDOW)
    later = await post(service, headers, call(system, "ok", journeyId="other"))
    assert ("success", 6) == (later["outcome"], system.hits["ok"])


async def test_every_retry_takes_a_slot(
    start_service: StartService, clock: FakeClock, system: System
) -> None:
    """A system failing twice: the call succeeds on its 3rd attempt, having taken 3 of
    the 5 slots, so only 2 more calls get one in the same window."""
    service = await start_service(clock=clock, settings=NO_DELAY)
    headers = await service.key()
    await deploy_capping(service, headers, system.url("*"), 5, 1000)
    flaky = await post(service, headers, call(system, "flaky"))
    after = [(await post(service, headers, call(system, "ok")))["outcome"] for _ in range(3)]
    assert ("success", 3, 3, 500) == (
        flaky["outcome"], flaky["attempts"], flaky["slots"], flaky["originError"]["status"]
    )  # fmt: skip
    assert ["success", "success", "capped"] == after


async def test_the_journey_timeout_is_the_budget_of_every_call(
    start_service: StartService, clock: FakeClock, system: System
) -> None:
    """Journey declared with 5 s: a fast call succeeds; a held request is cancelled at 5 s
    (timedout); a 500 after 2 s is retried and succeeds within the 3 s left."""
    service = await start_service(clock=clock, settings=NO_DELAY)
    headers = await service.key()
    assert 200 == (await service.request("PUT", "/v1/journeys/j5", headers,
                                         {"timeoutSeconds": 5}))[0]  # fmt: skip

    fast = await post(service, headers, call(system, "ok", journeyId="j5"))
    held = asyncio.create_task(post(service, headers, call(system, "hold", journeyId="j5")))
    await until(lambda: system.in_flight == 1)
    await clock.advance(5)
    await until(lambda: held.done() and system.disconnected == 1)
    late = asyncio.create_task(post(service, headers, call(system, "slow500", journeyId="j5")))
    await until(lambda: system.hits.get("slow500") == 1)
    await clock.advance(2)
    await until(late.done)

    summary = [(a["outcome"], a["joStatusCode"], a["attempts"], a["executionMs"])
               for a in (fast, held.result(), late.result())]  # fmt: skip
    assert [
        ("success", None, 1, 0.0),
        ("timedout", "timedout", 1, 5000.0),
        ("success", None, 2, 2000.0),
    ] == summary
    assert ("http", 500) == (late.result()["originError"]["kind"],
                             late.result()["originError"]["status"])  # fmt: skip


async def test_throttled_calls_wait_in_a_durable_fifo_across_a_restart(
    start_service: StartService, clock: FakeClock, system: System, tmp_path: Path
) -> None:
    """maxThroughput 200: of 500 calls, 200 go at once and 300 are queued (GET says so);
    the service stops, and starts again on the same data a window later: the head 200 of
    the queue leave in that window, the last 100 in the next, and every call's result is
    readable after the restart. (Calls that leave in one window leave at once, over
    connections of their own: their arrivals may interleave; windows may not.)"""
    data = tmp_path / "data"
    service = await start_service(data, clock=clock)
    headers = await service.key()
    await deploy_throttling(service, headers, system.url("call/*"), 200)
    answers = [await post(service, headers, call(system, f"call/{n}", waitSeconds=0))
               for n in range(500)]  # fmt: skip
    ids = [a["callId"] for a in answers]
    assert {"running": 200, "queued": 300} == Counter(a["state"] for a in answers)
    gate = service.runtime.gate
    await until(lambda: not any(gate.running(call_id) for call_id in ids[:200]))
    status, pending = await service.request("GET", f"/v1/calls/{ids[-1]}", headers)
    assert (list(range(200)), 202, "queued") == (sorted(system.delivered), status,
                                                 pending["state"])  # fmt: skip
    await service.stop()
    await clock.advance(WINDOW)  # while the service is down

    service = await start_service(data, clock=clock)
    await until(lambda: len(system.delivered) == 400)
    await clock.advance(WINDOW)
    await until(lambda: len(system.delivered) == 500)
    assert list(range(200, 400)) == sorted(system.delivered[200:400])
    assert list(range(400, 500)) == sorted(system.delivered[400:])

    results = [await service.request("GET", f"/v1/calls/{call_id}", headers) for call_id in ids]
    assert {(200, "success")} == {(status, r["outcome"]) for status, r in results}
    queued_ms = [r["queuedMs"] for _, r in results[200:]]
    assert [WINDOW * 1000] * 200 + [2 * WINDOW * 1000] * 100 == queued_ms


async def test_data_sources_are_capped_at_15_per_second_by_default(
    start_service: StartService, clock: FakeClock, system: System
) -> None:
    """Without a rule, 20 data source fetches at one instant: 15 succeed, 5 are capped."""
    service = await start_service(clock=clock)
    headers = await service.key()
    fetch = call(system, "ok", service="dataSource", request={"method": "GET"})
    answers = await asyncio.gather(*(post(service, headers, fetch) for _ in range(20)))
    assert ({"success": 15, "capped": 5}, 15) == (
        Counter(a["outcome"] for a in answers), system.hits["ok"]
    )  # fmt: skip
