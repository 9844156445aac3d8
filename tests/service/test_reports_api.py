"""The report API: summaries and time series of the calls of one org and sandbox.

Calls go through the real gate of a real service; the external system is a scripted
transport whose latencies are waits on the fake clock, so every call ends at a known
instant and lands in a known bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.loopback import until
from tests.service.conftest import Running, StartService

from sluicegate.configs import ConfigKind
from sluicegate.outcomes import CallResult
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock, MockTransport
from sluicegate.transport import Request, Response

API = "https://api.example.org"
T0 = 1_800_000_000  # a whole minute: 2027-01-15T08:00:00Z
SETTINGS = Settings(allow_loopback=True, retry_schedule=(0.0, 0.0, 0.0))


#: The external system of each test's clock.
SYSTEMS: dict[FakeClock, MockTransport] = {}


def system(clock: FakeClock) -> MockTransport:
    """``/ok/<ms>`` answers 200 after ``ms`` of clock time, ``/missing`` 404, ``/flaky``
    500 on every other hit."""
    hits: dict[str, int] = {}

    async def handle(request: Request) -> Response:
        path = urlsplit(request.url).path
        hits[path] = hits.get(path, 0) + 1
        if path.startswith("/ok/"):
            await clock.sleep(int(path.removeprefix("/ok/")) / 1000)
            return Response(status=200)
        if path == "/flaky" and hits[path] % 2:
            return Response(status=500)
        return Response(status=404 if path == "/missing" else 200)

    SYSTEMS[clock] = MockTransport(handle)
    return SYSTEMS[clock]


async def start(
    start_service: StartService, data_dir: Path | None = None, at: float = T0
) -> tuple[Running, FakeClock]:
    clock = FakeClock(start=at)
    running = await start_service(data_dir, clock=clock, transport=system(clock), settings=SETTINGS)
    return running, clock


async def call(
    running: Running, clock: FakeClock, path: str, n: int = 1, **where: str
) -> list[CallResult]:
    """Make ``n`` concurrent calls and let the clock run until they end."""
    args: dict[str, Any] = {
        "org": "acme",
        "sandbox": "prod",
        "journey": "j1",
        "service": "action",
        "method": "GET",
        "url": API + path,
    } | where
    requests = SYSTEMS[clock].requests
    sent = len(requests)
    tasks = [asyncio.create_task(running.runtime.gate.call(**args)) for _ in range(n)]
    if path.startswith("/ok/"):  # once every request is in the system (real I/O), its time
        await until(lambda: len(requests) == sent + n or all(t.done() for t in tasks))
        await clock.advance(int(path.removeprefix("/ok/")) / 1000)
    await until(lambda: all(t.done() for t in tasks))
    return [task.result() for task in tasks]


async def get(running: Running, path: str, headers: dict[str, str]) -> Any:
    status, body = await running.request("GET", path, headers)
    assert 200 == status, body
    return body


async def test_summary_counts_outcomes_and_percentiles(start_service: StartService) -> None:
    """Calls, attempts, retries, outcomes and latency percentiles of the last hour."""
    running, clock = await start(start_service)
    viewer = await running.key(role="viewer")
    await call(running, clock, "/ok/30", 3)
    await call(running, clock, "/ok/3000")
    await call(running, clock, "/missing")
    await call(running, clock, "/flaky", journey="j2")
    summary = await get(running, "/v1/reports/summary", viewer)
    assert {
        "calls": 6,
        "attempts": 7,
        "retries": 1,
        "slots": 7,
        "outcomes": {"http_error": 1, "success": 5},
    } == {k: summary[k] for k in ("calls", "attempts", "retries", "slots", "outcomes")}
    # Latencies 0, 0, 30, 30, 30, 3000 ms: percentiles are histogram bucket bounds.
    assert {"p50": 50.0, "p95": 5000.0, "p99": 5000.0, "avg": 515.0} == summary["latencyMs"]
    assert {"p50": 1.0, "p95": 1.0, "p99": 1.0, "avg": 0.0} == summary["queuedMs"]


async def test_empty_from_and_to_are_the_defaults(start_service: StartService) -> None:
    """``from=`` and ``to=`` (empty, as a form leaves them; the schema allows them) mean
    the last hour, as when they are absent."""
    running, clock = await start(start_service)
    viewer = await running.key(role="viewer")
    await call(running, clock, "/ok/30")
    plain = await get(running, "/v1/reports/summary", viewer)
    assert plain == await get(running, "/v1/reports/summary?from=&to=", viewer)
    assert 1 == plain["calls"]


async def test_summary_filters(start_service: StartService) -> None:
    """journeyId, service, endpoint, from and to narrow the summary."""
    running, clock = await start(start_service)
    admin = await running.key()
    record = await running.runtime.gate.rules.create(
        ConfigKind.CAPPING,
        org="acme",
        sandbox="prod",
        payload={
            "url": f"{API}/capped/*",
            "methods": ["GET"],
            "services": {"action": {"rating": {"maxCallsCount": 1, "periodInMs": 60_000}}},
        },
    )
    await running.runtime.gate.rules.deploy(
        ConfigKind.CAPPING, org="acme", sandbox="prod", uid=record.uid
    )
    await call(running, clock, "/ok/5", 2)
    await call(running, clock, "/capped/x", 3, journey="j2")
    await clock.advance(20)
    await call(running, clock, "/ok/5", service="dataSource")

    async def outcomes(query: str) -> dict[str, int]:
        body = await get(running, f"/v1/reports/summary?{query}", admin)
        found: dict[str, int] = body["outcomes"]
        return found

    assert {"success": 1, "capped": 2} == await outcomes("journeyId=j2")
    assert {"success": 1, "capped": 2} == await outcomes(f"endpoint={record.uid}")
    assert {"success": 3} == await outcomes("endpoint=api.example.org")
    assert {"success": 1} == await outcomes("service=dataSource")
    assert {"success": 1} == await outcomes(f"from={T0 + 10}")
    assert {"success": 3, "capped": 2} == await outcomes("to=2027-01-15T08:00:10Z")
    assert {"success": 3, "capped": 2} == await outcomes("to=2027-01-15T09:00:10%2B01:00")
    assert {} == await outcomes(f"from={T0 + 1}&to={T0 + 10}")
    assert {} == await outcomes("journeyId=nobody")


async def test_timeseries_by_second_and_minute(start_service: StartService) -> None:
    """Intervals with calls only, UTC-aligned, oldest first, each with a summary."""
    running, clock = await start(start_service)
    admin = await running.key()
    await call(running, clock, "/ok/7", 2)
    await clock.advance(1)
    await call(running, clock, "/missing")
    await clock.advance(60)
    await call(running, clock, "/ok/7")
    body = await get(running, f"/v1/reports/timeseries?step=1s&from={T0}", admin)
    assert "1s" == body["step"]
    assert [
        ("2027-01-15T08:00:00.000Z", {"success": 2}),
        ("2027-01-15T08:00:01.000Z", {"http_error": 1}),
        ("2027-01-15T08:01:01.000Z", {"success": 1}),
    ] == [(b["start"], b["outcomes"]) for b in body["buckets"]]
    body = await get(running, f"/v1/reports/timeseries?step=1m&from={T0}", admin)
    assert [("2027-01-15T08:00:00.000Z", 3, 2), ("2027-01-15T08:01:00.000Z", 1, 1)] == [
        (b["start"], b["calls"], b["outcomes"].get("success")) for b in body["buckets"]
    ]
    assert {"p50": 10.0, "p95": 10.0, "p99": 10.0, "avg": 7.0} == body["buckets"][1]["latencyMs"]


async def test_bad_parameters_are_400(start_service: StartService) -> None:
    """Unknown step or service, unreadable or reversed times, too many intervals: 400."""
    running, _ = await start(start_service)
    admin = await running.key()
    cases = {
        "/v1/reports/timeseries?step=5s": "INVALID_REQUEST",
        "/v1/reports/summary?service=email": "INVALID_REQUEST",
        "/v1/reports/summary?from=yesterday": "INVALID_TIME",
        "/v1/reports/summary?to=nan": "INVALID_TIME",
        "/v1/reports/summary?from=-5": "INVALID_TIME",
        f"/v1/reports/summary?from={T0}&to={T0}": "INVALID_RANGE",
        f"/v1/reports/timeseries?step=1s&from={T0 - 86_400}": "TOO_MANY_BUCKETS",
    }
    found = {}
    for path in cases:
        status, body = await running.request("GET", path, admin)
        found[path] = body["code"] if status == 400 else status
    assert cases == found


async def test_orgs_and_sandboxes_are_isolated(start_service: StartService) -> None:
    """Each org and sandbox sees only its own calls; a caller key reads no reports."""
    running, clock = await start(start_service)
    acme = await running.key()
    await running.runtime.tenants.create_sandbox(org="acme", name="dev", type="development")
    other = await running.key(org="other")
    await call(running, clock, "/ok/5", 2)
    await call(running, clock, "/missing", sandbox="dev")
    await call(running, clock, "/ok/5", 3, org="other")
    assert (2, 1, 3) == (
        (await get(running, "/v1/reports/summary", acme))["calls"],
        (await get(running, "/v1/reports/summary", acme | {"x-sandbox-name": "dev"}))["calls"],
        (await get(running, "/v1/reports/summary", other))["calls"],
    )
    status, _ = await running.request(
        "GET", "/v1/reports/summary", acme | {"x-gw-ims-org-id": "other"}
    )
    assert 403 == status
    caller = await running.key(role="caller")
    assert 403 == (await running.request("GET", "/v1/reports/summary", caller))[0]


async def test_buckets_are_flushed_about_every_second(
    start_service: StartService, tmp_path: Path
) -> None:
    """A second of clock time after a call, its bucket is in the service database."""
    running, clock = await start(start_service)
    await call(running, clock, "/ok/5", 2)

    def stored() -> int:
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "service.db")) as conn:
            return int(
                conn.execute("SELECT COALESCE(SUM(calls), 0) FROM report_buckets").fetchone()[0]
            )

    assert 0 == stored()
    await clock.advance(1)
    async with asyncio.timeout(5):
        while stored() != 2:  # noqa: ASYNC110 -- waits for the write, not for time
            await asyncio.sleep(0.005)
    await call(running, clock, "/ok/5")  # read back: stored rows plus the unflushed one
    assert 3 == (await get(running, "/v1/reports/summary", await running.key()))["calls"]


async def test_buckets_survive_a_restart(start_service: StartService) -> None:
    """Counts are kept across a restart and added to by the calls made after it."""
    running, clock = await start(start_service)
    await call(running, clock, "/ok/5", 2)
    await call(running, clock, "/missing")
    await running.stop()
    running, clock = await start(start_service, at=T0 + 30)
    admin = await running.key()
    await call(running, clock, "/ok/5")
    summary = await get(running, "/v1/reports/summary", admin)
    assert (4, {"http_error": 1, "success": 3}) == (summary["calls"], summary["outcomes"])


async def test_old_buckets_are_folded_into_minutes_then_dropped(
    start_service: StartService,
) -> None:
    """After a day, seconds fold into their minute (sums intact); after 30 days, gone."""
    running, clock = await start(start_service)
    await clock.advance(10)
    await call(running, clock, "/ok/5", 2)
    await clock.advance(20)
    await call(running, clock, "/missing")
    await running.stop()
    running, _ = await start(start_service, at=T0 + 2 * 86_400)
    admin = await running.key()
    body = await get(running, f"/v1/reports/timeseries?step=1s&from={T0}&to={T0 + 60}", admin)
    assert [("2027-01-15T08:00:00.000Z", 3)] == [(b["start"], b["calls"]) for b in body["buckets"]]
    await running.stop()
    running, _ = await start(start_service, at=T0 + 31 * 86_400)
    body = await get(running, f"/v1/reports/summary?from={T0}", await running.key())
    assert 0 == body["calls"]
