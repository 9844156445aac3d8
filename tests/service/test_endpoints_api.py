"""``GET /v1/endpoints``: rules, live use (slots, connections, queues) and alerts."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from tests.loopback import until
from tests.service.conftest import WINDOW, Running, StartService
from tests.service.test_metrics import queued

from sluicegate.configs import ConfigKind
from sluicegate.matching import capping_key
from sluicegate.outcomes import CallResult
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock, MockTransport
from sluicegate.transport import Request, Response

API = "https://api.example.org"
T0 = 1_800_000_000
SETTINGS = Settings(allow_loopback=True, retry_schedule=(0.0, 0.0, 0.0))


class System:
    """``/hold`` answers when released; ``/missing`` 404; anything else 200 at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def handle(self, request: Request) -> Response:
        path = urlsplit(request.url).path
        if path == "/hold":
            await self.release.wait()
        return Response(status=404 if path == "/missing" else 200)


async def start(start_service: StartService) -> tuple[Running, FakeClock, System]:
    clock, external = FakeClock(start=T0), System()
    running = await start_service(
        clock=clock, transport=MockTransport(external.handle), settings=SETTINGS
    )
    return running, clock, external


def spawn(running: Running, path: str, n: int = 1, **where: str) -> list[asyncio.Task[CallResult]]:
    args: dict[str, Any] = {
        "org": "acme",
        "sandbox": "prod",
        "journey": "j",
        "service": "action",
        "method": "POST",
        "url": API + path,
    } | where
    return [asyncio.create_task(running.runtime.gate.call(**args)) for _ in range(n)]


async def deploy(running: Running, kind: ConfigKind, payload: dict[str, Any]) -> str:
    rules, scope = running.runtime.gate.rules, {"org": "acme", "sandbox": "prod"}
    record = await rules.create(kind, payload=payload, **scope)
    await rules.deploy(kind, uid=record.uid, **scope)
    return record.uid


def capping(path: str, count: int, **extra: Any) -> dict[str, Any]:
    rating = {"maxCallsCount": count, "periodInMs": 60_000}
    return {
        "url": API + path,
        "methods": ["POST"],
        "services": {"action": {"rating": rating, **extra}},
    }


async def endpoints(running: Running, headers: dict[str, str], query: str = "") -> Any:
    status, body = await running.request("GET", f"/v1/endpoints{query}", headers)
    assert 200 == status, body
    return {entry["endpoint"]: entry for entry in body["results"]}


async def test_capping_rule_with_slots_and_connections_in_use(start_service: StartService) -> None:
    """A held request shows one connection in use; the window counts every grant."""
    running, _, external = await start(start_service)
    uid = await deploy(running, ConfigKind.CAPPING, capping("/hold", 10, maxHttpConnections=1))
    held = spawn(running, "/hold", 2)  # one holds the connection, one waits for it
    key = capping_key("acme", "prod", uid, "action")
    await until(lambda: running.runtime.gate.connections_in_use(key) == 1)
    found = (await endpoints(running, await running.key(role="viewer")))[uid]
    assert {"endpoint": uid, "kind": "capping", "url": f"{API}/hold"} == {
        k: found[k] for k in ("endpoint", "kind", "url")
    }
    assert [
        {
            "kind": "capping",
            "service": "action",
            "enforced": True,
            "uid": uid,
            "state": "deployed",
            "url": f"{API}/hold",
            "methods": ["POST"],
            "rating": {"maxCallsCount": 10, "periodInMs": 60_000},
            "maxHttpConnections": 1,
            "slotsInUse": 2,
            "connectionsInUse": 1,
        }
    ] == found["rules"]
    external.release.set()
    await asyncio.gather(*held)
    found = (await endpoints(running, await running.key()))[uid]
    assert (0, 2, {"success": 2}) == (
        found["rules"][0]["connectionsInUse"],
        found["recent"]["calls"],
        found["recent"]["outcomes"],
    )


async def test_throttled_backlog_shows_depth_and_oldest_age(start_service: StartService) -> None:
    """Over maxThroughput, calls queue: depth and the age of the oldest are shown."""
    running, clock, _ = await start(start_service)
    payload = {"name": "t", "urlPattern": f"{API}/thr/*", "methods": ["POST"], "maxThroughput": 200}
    uid = await deploy(running, ConfigKind.THROTTLING, payload)
    first = spawn(running, "/thr/a", 200)
    await asyncio.gather(*first)
    backlog = spawn(running, "/thr/a", 5)
    await queued(running, 5)
    await clock.advance(0.5)
    found = (await endpoints(running, await running.key()))[uid]
    assert ("throttling", {"depth": 5, "oldestAgeSeconds": 0.5, "maxThroughput": 200}) == (
        found["kind"],
        found["queue"],
    )
    assert (200, 200, "deployed") == (
        found["rules"][0]["maxThroughput"],
        found["rules"][0]["slotsInUse"],
        found["rules"][0]["state"],
    )
    await clock.advance(WINDOW)
    await asyncio.gather(*backlog)
    found = (await endpoints(running, await running.key()))[uid]
    assert {"depth": 0, "maxThroughput": 200} == found["queue"]


async def test_hosts_seen_show_the_default_cap(start_service: StartService) -> None:
    """A host called without a rule is listed with the default cap of each service."""
    running, _, _ = await start(start_service)
    await asyncio.gather(*spawn(running, "/a", 3), *spawn(running, "/b", service="dataSource"))
    found = (await endpoints(running, await running.key()))["api.example.org"]
    assert ("host", "api.example.org") == (found["kind"], found["url"])
    assert [("action", 300_000, 60_000, 3), ("dataSource", 15, 1000, 1)] == [
        (r["service"], r["rating"]["maxCallsCount"], r["rating"]["periodInMs"], r["slotsInUse"])
        for r in found["rules"]
    ]
    assert {"calls": 4, "outcomes": {"success": 4}} == {
        k: found["recent"][k] for k in ("calls", "outcomes")
    }


async def test_alerts_over_the_last_five_minutes(start_service: StartService) -> None:
    """Error rate over the threshold and capped calls raise alerts, for 5 minutes."""
    running, clock, _ = await start(start_service)
    admin = await running.key()
    uid = await deploy(running, ConfigKind.CAPPING, capping("/capped", 1))
    await asyncio.gather(
        *spawn(running, "/missing", 3), *spawn(running, "/ok"), *spawn(running, "/capped", 3)
    )
    found = await endpoints(running, admin)
    assert [
        {"name": "errorRateExceeded", "windowSeconds": 300, "value": 0.75, "threshold": 0.2}
    ] == found["api.example.org"]["alerts"]
    assert [{"name": "cappingTriggered", "windowSeconds": 300, "count": 2}] == found[uid]["alerts"]
    assert 0.0 == found[uid]["recent"]["errorRate"]
    found = await endpoints(running, admin, "?errorRateThreshold=0.75")
    assert [] == found["api.example.org"]["alerts"]
    await clock.advance(300)
    found = await endpoints(running, admin)
    assert ([], [], 0) == (
        found["api.example.org"]["alerts"],
        found[uid]["alerts"],
        found[uid]["recent"]["calls"],
    )


async def test_only_the_sandbox_s_endpoints_are_listed(start_service: StartService) -> None:
    """Another sandbox's rules and calls are not listed; the org's throttling config is."""
    running, _, _ = await start(start_service)
    await running.runtime.tenants.create_sandbox(org="acme", name="dev", type="development")
    capped = await deploy(running, ConfigKind.CAPPING, capping("/x", 5))
    throttled = await deploy(
        running,
        ConfigKind.THROTTLING,
        {"urlPattern": f"{API}/thr/*", "methods": ["POST"], "maxThroughput": 300},
    )
    await asyncio.gather(*spawn(running, "/y"))
    dev = await running.key() | {"x-sandbox-name": "dev"}
    assert [throttled] == list(await endpoints(running, dev))
    prod = await endpoints(running, await running.key())
    assert [capped, throttled, "api.example.org"] == list(prod)
    other = await running.key(org="other")
    assert [] == list(await endpoints(running, other))


async def test_bad_threshold_is_400(start_service: StartService) -> None:
    """errorRateThreshold must be a number from 0 to 1."""
    running, _, _ = await start(start_service)
    status, body = await running.request(
        "GET", "/v1/endpoints?errorRateThreshold=2", await running.key()
    )
    assert (400, "INVALID_REQUEST") == (status, body["code"])
