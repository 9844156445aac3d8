"""``GET /metrics``: Prometheus exposition of one org's calls, by bearer token alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from tests.loopback import _serving, eventually, until
from tests.service.conftest import Running, StartService

from sluicegate.configs import ConfigKind
from sluicegate.outcomes import CallResult
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock, MockTransport
from sluicegate.transport import Request, Response

API = "https://api.example.org"
SETTINGS = Settings(allow_loopback=True, retry_schedule=(0.0, 0.0, 0.0))


async def start(start_service: StartService) -> tuple[Running, FakeClock]:
    clock = FakeClock(start=1_800_000_000)

    async def handle(request: Request) -> Response:
        path = urlsplit(request.url).path
        if path == "/slow":
            await clock.sleep(0.3)
        return Response(status={"/missing": 404, "/flaky": 503}.get(path, 200))

    running = await start_service(clock=clock, transport=MockTransport(handle), settings=SETTINGS)
    return running, clock


async def queued(running: Running, depth: int) -> None:
    """Wait for the store's writes (real I/O) to queue ``depth`` calls."""

    async def depths() -> bool:
        return [depth] == [q.depth for q in await running.runtime.gate.queues()]

    await eventually(depths)


def spawn(running: Running, path: str, n: int = 1, **where: str) -> list[asyncio.Task[CallResult]]:
    args: dict[str, Any] = {
        "org": "acme",
        "sandbox": "prod",
        "journey": "j1",
        "service": "action",
        "method": "POST",
        "url": API + path,
    } | where
    return [asyncio.create_task(running.runtime.gate.call(**args)) for _ in range(n)]


def bearer(headers: dict[str, str]) -> dict[str, str]:
    """Only what Prometheus sends: the Authorization header."""
    return {"Authorization": headers["Authorization"]}


async def scrape(running: Running, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    async with running.http.get(f"{running.base}/metrics{query}", headers=headers) as response:
        text = await response.text()
        assert 200 == response.status, text
        assert response.headers["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(families: dict[str, Any], name: str) -> dict[frozenset[tuple[str, str]], float]:
    """``{labels: value}`` of the samples named ``name``."""
    return {
        frozenset(sample.labels.items()): sample.value
        for family in families.values()
        for sample in family.samples
        if sample.name == name
    }


async def test_counters_by_org_sandbox_service_endpoint_outcome(
    start_service: StartService,
) -> None:
    """Calls, attempts, retries and slots per outcome; no journey label anywhere."""
    running, _ = await start(start_service)
    key = bearer(await running.key(role="viewer"))
    await asyncio.gather(
        *spawn(running, "/ok", 2),
        *spawn(running, "/ok", journey="j2"),
        *spawn(running, "/missing"),
        *spawn(running, "/flaky"),
    )
    families = await scrape(running, key)
    where = {
        ("endpoint", "api.example.org"),
        ("org", "acme"),
        ("sandbox", "prod"),
        ("service", "action"),
    }
    success, error = (frozenset(where | {("outcome", o)}) for o in ("success", "http_error"))
    assert {success: 3.0, error: 2.0} == samples(families, "sluicegate_calls_total")
    # 404 once, 503 four times
    assert {success: 3.0, error: 5.0} == samples(families, "sluicegate_attempts_total")
    assert 3.0 == sum(samples(families, "sluicegate_retries_total").values())
    assert 8.0 == sum(samples(families, "sluicegate_slots_total").values())
    labels = {name for f in families.values() for s in f.samples for name in s.labels}
    assert "journey" not in labels


async def test_latency_and_queue_time_histograms(start_service: StartService) -> None:
    """Histograms in seconds on the report buckets' bounds, with exact sums."""
    running, clock = await start(start_service)
    key = bearer(await running.key())
    calls = spawn(running, "/slow") + spawn(running, "/ok")
    await until(calls[1].done)  # /ok needs only I/O, no time: it ends at once
    await clock.run_until(asyncio.gather(*calls), step=0.1, limit=5)
    families = await scrape(running, key)
    assert "histogram" == families["sluicegate_call_latency_seconds"].type
    buckets = {
        dict(labels)["le"]: value
        for labels, value in samples(families, "sluicegate_call_latency_seconds_bucket").items()
    }
    assert (1.0, 1.0, 2.0, 2.0) == (
        buckets["0.001"],
        buckets["0.25"],
        buckets["0.5"],
        buckets["+Inf"],
    )
    total = samples(families, "sluicegate_call_latency_seconds_sum")
    assert 0.3 == round(sum(total.values()), 6)
    assert [2.0] == list(samples(families, "sluicegate_queue_time_seconds_count").values())


async def test_queue_gauges_of_a_throttled_backlog(start_service: StartService) -> None:
    """Depth and oldest age of the org's throttling queue, labelled by its uid; an org
    whose name is a prefix of the queue's org does not see it."""
    running, clock = await start(start_service)
    org = "acme:x"  # its queue key starts with "thr:acme:", like the keys of org "acme"
    owner = bearer(await running.key(org=org))
    rules, scope = running.runtime.gate.rules, {"org": org, "sandbox": "prod"}
    payload = {"urlPattern": f"{API}/thr/*", "methods": ["POST"], "maxThroughput": 200}
    record = await rules.create(ConfigKind.THROTTLING, payload=payload, **scope)
    await rules.deploy(ConfigKind.THROTTLING, uid=record.uid, **scope)
    await asyncio.gather(*spawn(running, "/thr/a", 200, org=org))
    spawn(running, "/thr/a", 3, org=org)
    await queued(running, 3)
    await clock.advance(0.25)
    families = await scrape(running, owner)
    queue = frozenset({("org", org), ("queue", record.uid)})
    assert ({queue: 3.0}, {queue: 0.25}) == (
        samples(families, "sluicegate_queue_depth"),
        samples(families, "sluicegate_queue_oldest_age_seconds"),
    )
    acme = await scrape(running, bearer(await running.key(org="acme")))
    assert {} == samples(acme, "sluicegate_queue_depth")


async def test_only_the_key_s_org_is_shown(start_service: StartService) -> None:
    """Another org's series are absent; ``sandbox`` narrows to one sandbox of the org."""
    running, _ = await start(start_service)
    await running.runtime.tenants.create_sandbox(org="acme", name="dev", type="development")
    await asyncio.gather(
        *spawn(running, "/ok"),
        *spawn(running, "/ok", sandbox="dev"),
        *spawn(running, "/ok", 4, org="other"),
    )
    acme = bearer(await running.key())
    found = samples(await scrape(running, acme), "sluicegate_calls_total")
    assert {("acme", "prod"), ("acme", "dev")} == {
        (dict(k)["org"], dict(k)["sandbox"]) for k in found
    }
    found = samples(await scrape(running, acme, "?sandbox=dev"), "sluicegate_calls_total")
    assert [("acme", "dev", 1.0)] == [
        (dict(k)["org"], dict(k)["sandbox"], v) for k, v in found.items()
    ]
    other = samples(
        await scrape(running, bearer(await running.key(org="other"))), "sluicegate_calls_total"
    )
    assert [4.0] == list(other.values())


async def test_keys_are_required(start_service: StartService) -> None:
    """No or unknown key 401, a caller key 403, an unknown sandbox 404."""
    running, _ = await start(start_service)
    caller = bearer(await running.key(role="caller"))
    cases = [
        ({}, ""),
        ({"Authorization": "Bearer sg_nope"}, ""),
        (caller, ""),
        (bearer(await running.key()), "?sandbox=nope"),
    ]
    found = [(await running.request("GET", f"/metrics{q}", h))[0] for h, q in cases]
    assert [401, 401, 403, 404] == found


@asynccontextmanager
async def receivers() -> AsyncIterator[tuple[str, str]]:
    """Two callback receivers on loopback: one answers 204, the other 500."""

    async def accept(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async with _serving(accept) as ok, _serving(fail) as failing:
        yield ok, failing


async def test_callbacks_by_org_sandbox_and_result(start_service: StartService) -> None:
    """Callbacks delivered, failed (after every attempt) and refused (egress policy) per
    org and sandbox, and pending while one is retried; another org sees none of them."""
    running, clock = await start(start_service)
    await running.runtime.tenants.create_sandbox(org="acme", name="dev", type="development")
    prod, dev = await running.key(), await running.key(sandbox="dev")
    calls = running.runtime.calls
    async with receivers() as (ok, failing):
        for headers, callback in [(prod, ok), (prod, ok), (prod, failing), (dev, ok),
                                  (prod, "http://10.255.255.1/cb")]:  # fmt: skip
            body = {"journeyId": "j1", "service": "action", "callbackUrl": callback,
                    "request": {"method": "POST", "url": f"{API}/ok"}}  # fmt: skip
            assert 200 == (await running.request("POST", "/v1/calls", headers, body))[0]
        await until(lambda: {"delivered": 3, "failed": 0, "refused": 1} == calls.callback_counts)
        families = await scrape(running, bearer(prod))
        sent = samples(families, "sluicegate_callbacks_total")
        assert {("prod", "delivered"): 2.0, ("prod", "failed"): 0.0, ("prod", "refused"): 1.0,
                ("dev", "delivered"): 1.0, ("dev", "failed"): 0.0, ("dev", "refused"): 0.0} == {
            (dict(k)["sandbox"], dict(k)["result"]): v for k, v in sent.items()
        }  # fmt: skip
        assert {"acme"} == {dict(k)["org"] for k in sent}
        pending = samples(families, "sluicegate_callbacks_pending")
        assert {"prod": 1.0, "dev": 0.0} == {dict(k)["sandbox"]: v for k, v in pending.items()}
        async with asyncio.timeout(5):
            while calls.callback_counts["failed"] == 0:  # after 1 + 5 + 30 s of retries
                await clock.advance(1)
                await asyncio.sleep(0.001)  # let the retry's I/O happen
    families = await scrape(running, bearer(prod), "?sandbox=prod")
    assert ({"delivered": 2.0, "failed": 1.0, "refused": 1.0}, [0.0]) == (
        {dict(k)["result"]: v for k, v in samples(families, "sluicegate_callbacks_total").items()},
        list(samples(families, "sluicegate_callbacks_pending").values()),
    )
    other = await scrape(running, bearer(await running.key(org="other")))
    assert ({}, {}) == (
        samples(other, "sluicegate_callbacks_total"),
        samples(other, "sluicegate_callbacks_pending"),
    )


async def test_the_process_s_own_series(start_service: StartService) -> None:
    """Memory, CPU time, file descriptors and Python's garbage collections of the process."""
    running, _ = await start(start_service)
    families = await scrape(running, bearer(await running.key()))
    memory, fds, limit = (
        next(iter(samples(families, name).values()))
        for name in ("process_resident_memory_bytes", "process_open_fds", "process_max_fds")
    )
    assert 0 < memory
    assert 0 < fds <= limit
    assert "counter" == families["process_cpu_seconds"].type
    assert {"0", "1", "2"} == {
        dict(k)["generation"] for k in samples(families, "python_gc_collections_total")
    }
    assert [1.0] == list(samples(families, "python_info").values())
