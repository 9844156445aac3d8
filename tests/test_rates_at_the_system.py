"""Rates as the external system sees them: the service under load, a busy machine, a crash.

A rule's promise is judged where its user sees it: at the external system, by the arrival
times of the requests it received (``tests/arrivals.py``: kernel receive timestamps), in
sliding windows wherever they start, and by a count of those requests against the
attempts the service reported. ``sluicegate serve`` runs as a process of its own, driven
over HTTP at three times a rule's rate by 200 concurrent clients while another process
keeps one core busy; the throttling case is killed with SIGKILL, calls still queued, and
restarted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.arrivals import Arrival, ArrivalSystem, arrivals_system, busy_core
from tests.loopback import Api, eventually, sluicegate_serve

from sluicegate.testing import most_in_window

CLIENTS = 200
SECONDS = 10
#: Share of the possible calls that must reach the external system.
UTILISATION = 0.95
#: The same for a throttling queue drained with a core kept busy: measured 0.92-1.00 on
#: this 2-core machine (the same before and after the shared backends came), as a slot
#: counts from its request's send and a starved process sends late.
THROTTLED_UTILISATION = 0.85

pytestmark = pytest.mark.slow


async def drive(
    api: Api, url: str, *, rate: float, seconds: float, bursts: float | None = None
) -> None:
    """``rate`` calls per second for ``seconds``, from CLIENTS concurrent clients, each
    call ``url/<n>``: evenly spread, or all of each ``bursts`` seconds at its start. A
    client that falls behind its schedule sends at once."""
    loop = asyncio.get_running_loop()
    start, total = loop.time(), round(rate * seconds)
    per_burst = rate * bursts if bursts else 1

    def due(n: int) -> float:
        return start + (n // per_burst) * per_burst / rate

    async def client(first: int) -> None:
        for n in range(first, total, CLIENTS):
            delay = due(n) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the offered load, in real time
            await api.call(f"{url}/{n}")

    await asyncio.gather(*(client(c) for c in range(CLIENTS)))


async def settled(system: ArrivalSystem, prefix: str) -> list[float]:
    """The arrival times of ``prefix`` requests once no more arrive (their calls ended)."""
    seen: list[int] = []

    async def still() -> bool:
        seen.append(len(await arrived(system, prefix)))
        await asyncio.sleep(0.3)  # a quiet spell: no request still on its way
        return len(seen) > 1 and seen[-1] == seen[-2] == len(await arrived(system, prefix))

    await eventually(still, seconds=30)
    return [a.at for a in await arrived(system, prefix)]


async def arrived(system: ArrivalSystem, prefix: str) -> list[Arrival]:
    return [a for a in await system.arrivals() if a.path.startswith(prefix)]


def in_span(times: Sequence[float], start: float, end: float) -> int:
    return sum(start <= t < end for t in times)


@pytest.fixture
async def api(tmp_path: Path) -> Any:
    async with (
        sluicegate_serve(tmp_path / "data") as served,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as http,
    ):
        yield Api(served, http)


CAPPING = {"maxCallsCount": 100, "periodInMs": 1000}


async def deploy_capping(api: Api, system: ArrivalSystem) -> None:
    """Deploy :data:`CAPPING` on the action POSTs to ``system``'s ``/ok/*``."""
    await api.deploy(
        "endpointConfigs",
        {
            "url": system.url("/ok/*"),
            "methods": ["POST"],
            "services": {"action": {"rating": CAPPING}},
        },
    )


async def test_a_capping_rule_holds_at_the_external_system_under_load(api: Api) -> None:
    """Capping 100 per 1000 ms, offered 300 calls/s for 10 s on a busy machine: no window
    of 1000 ms at the external system holds more than 100 requests, wherever it starts,
    and at least 95% of the 1000 possible arrive."""
    async with arrivals_system() as system, busy_core():
        await deploy_capping(api, system)
        await drive(api, system.url("/ok/c"), rate=300, seconds=SECONDS)
        times = await settled(system, "/ok/c")
    assert most_in_window(times, 1.0) <= 100
    assert len(times) >= UTILISATION * 100 * SECONDS


async def test_a_capping_rule_holds_at_the_external_system_under_bursts(api: Api) -> None:
    """The same rule offered 300 calls/s in bursts of 30 every 100 ms: each burst's
    grants are made at once and its requests leave over the next milliseconds, yet no
    window of 1000 ms at the external system holds more than 100 (a slot counts from the
    send, not from the grant)."""
    async with arrivals_system() as system, busy_core():
        await deploy_capping(api, system)
        await drive(api, system.url("/ok/b"), rate=300, seconds=SECONDS / 2, bursts=0.1)
        times = await settled(system, "/ok/b")
    assert most_in_window(times, 1.0) <= 100


async def test_a_throttling_rule_holds_at_the_external_system_under_load_and_a_crash(
    tmp_path: Path,
) -> None:
    """Throttling 200/s, offered 600 calls/s for 10 s on a busy machine, then SIGKILL with
    calls queued, and a restart: no window of 1000 ms at the external system ever holds
    more than 200 requests, before, across or after the crash; at least 85% of the
    possible arrive while driven, and again after the restart."""
    data = tmp_path / "data"
    async with (
        arrivals_system() as system,
        busy_core(),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS)) as http,
    ):
        async with sluicegate_serve(data) as served:
            api = Api(served, http)
            await api.deploy("throttlingConfigs", {
                "name": "load", "urlPattern": system.url("/ok/*"), "methods": ["POST"],
                "maxThroughput": 200,
            })  # fmt: skip
            await drive(api, system.url("/ok/t"), rate=600, seconds=SECONDS)
            driven = time.time()
            served.kill()
            await served.process.wait()
        before = [a.at for a in await arrived(system, "/ok/t")]
        async with sluicegate_serve(data):

            async def drained_a_while() -> bool:
                times = [a.at for a in await arrived(system, "/ok/t") if a.at > driven]
                return bool(times) and max(times) - min(times) >= 5

            await eventually(drained_a_while, seconds=30)
            times = [a.at for a in await arrived(system, "/ok/t")]
    after = sorted(t for t in times if t > driven)
    assert most_in_window(times, 1.0) <= 200
    share = THROTTLED_UTILISATION
    assert in_span(before, before[0], driven) >= share * 200 * (driven - before[0])
    assert in_span(after, after[0], after[0] + 5) >= share * 200 * 5


async def test_requests_received_are_the_attempts_reported(api: Api) -> None:
    """Against a system that resets connections (capped at 10 per second) and one that
    redirects: it receives exactly the requests the service reports as attempts (no
    hidden re-send after a reset, every redirect hop counted), never more than a rule
    allows in a second; a redirect loop ends after 5 hops and is not retried."""
    async with arrivals_system() as system:
        for family, count in (("reset", 10), ("redirect", 40), ("loop", 40)):
            await api.deploy("endpointConfigs", {
                "url": system.url(f"/{family}/*"), "methods": ["GET"],
                "services": {"action": {"rating": {"maxCallsCount": count, "periodInMs": 1000}}},
            })  # fmt: skip
        paths = [f"/reset/{n}" for n in range(20)] + [f"/redirect/2/{n}" for n in range(8)]
        paths += ["/loop/0", "/loop/1"]
        results = await asyncio.gather(
            *(api.call(system.url(path), method="GET", wait=30) for path in paths)
        )
        received = await system.arrivals()
    assert {"done"} == {r["state"] for r in results}
    assert sum(r["attempts"] for r in results) == len(received)
    assert most_in_window([a.at for a in received if a.path.startswith("/reset/")], 1.0) <= 10
    redirected = {(r["outcome"], r["attempts"], r["joStatusCode"]) for r in results[20:]}
    assert {("success", 3, None), ("http_error", 6, "http_302")} == redirected
