"""The service against calling the external system directly, one call per request and in
batches, and calls queued through it.

One ``sluicegate serve --dev`` process relays calls to the loopback server of
:mod:`loopback` (a process of its own); the same aiohttp client calls that server directly
or through ``POST /v1/calls`` (``waitSeconds`` 30: it answers once the call ended), at the
same concurrency, alternately (:func:`throughput.compare`). Then: the latency a relay adds
at concurrency 1, ``POST /v1/calls:batch`` with 500 calls a request (alternately against a
second service on the opt-in reqwest transport), and calls queued behind a throttling rule
one per request (``waitSeconds`` 0) and in batches.

Why: an orchestrator that runs sluicegate as a service pays for its web layer on every
call; this says how much of the direct rate it keeps.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from machine import cpu_seconds
from measure import Series
from queue_service import START_TIMEOUT, served
from sluicegate.rules import MIN_THROUGHPUT
from tables import Table, Target, count, ratio, span, us
from throughput import CONCURRENCY, JOURNEY, SANDBOX, Contender, Opener, Spec, bare, compare

ORG = "demo"  # the org of the development key
BATCH = 500
BATCHES_AT_ONCE = 4
LATENCY_CALLS = 400
#: The lowest rate a throttling rule may have: nearly every call of the enqueue runs
#: waits behind it.
QUEUE_RATE = MIN_THROUGHPUT


@dataclass(frozen=True, slots=True)
class Rate:
    """Calls handled by the service in a timed run, and the service's CPU meanwhile."""

    calls: int
    seconds: float
    service_cpu: float

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.service_cpu / self.calls * 1e6


@dataclass(frozen=True, slots=True)
class Batches:
    """The timed runs of ``POST /v1/calls:batch`` against one service, and their outcomes."""

    runs: tuple[Rate, ...]
    outcomes: dict[str, int]

    @property
    def per_second(self) -> Series:
        return Series(tuple(run.per_second for run in self.runs))

    @property
    def cpu_us(self) -> float:
        return statistics.median(run.cpu_us for run in self.runs)


@dataclass(frozen=True, slots=True)
class ServiceResults:
    relay: tuple[Contender, Contender]  # through the service, direct
    service_cpu_us: float  # the service's CPU per relayed call (median run)
    latency_direct_us: float  # p50 at concurrency 1
    latency_relay_us: float
    batch: Batches  # the default transport (aiohttp)
    batch_reqwest: Batches
    enqueue_single: Rate
    enqueue_batch: Rate


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "x-gw-ims-org-id": ORG,
            "x-sandbox-name": SANDBOX}  # fmt: skip


def _call(url: str, wait: float | None = 30) -> dict[str, Any]:
    """A call to ``url``; with ``waitSeconds`` unless ``wait`` is None (a batch's call)."""
    call = {"journeyId": JOURNEY, "service": "action",
            "request": {"method": "POST", "url": url, "body": "{}"}}  # fmt: skip
    return call if wait is None else {**call, "waitSeconds": wait}


def relay(service: str, token: str, path: str) -> Opener:
    """One call per ``POST /v1/calls`` of the service, answered once it ended."""

    @asynccontextmanager
    async def open_client(base: str) -> AsyncIterator[Callable[[], Awaitable[bool]]]:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        body = json.dumps(_call(base + path)).encode()
        headers = {**_headers(token), "Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> bool:
                async with session.post(f"{service}/v1/calls", data=body, headers=headers) as r:
                    answer = await r.read()
                    return r.status == 200 and b'"outcome":"success"' in answer

            yield one

    return open_client


async def _latency(one: Callable[[], Awaitable[bool]], calls: int) -> list[float]:
    found = []
    for _ in range(calls):
        started = time.perf_counter()
        await one()
        found.append(time.perf_counter() - started)
    return found


async def _latencies(direct: Opener, relayed: Opener, base: str) -> tuple[float, float]:
    """p50 of one call at a time, direct and relayed, interleaved in rounds."""
    times: dict[str, list[float]] = {"direct": [], "relay": []}
    async with direct(base) as call_direct, relayed(base) as call_relay:
        ones = {"direct": call_direct, "relay": call_relay}
        for one in ones.values():
            await _latency(one, 50)  # warm-up
        for _ in range(4):
            for name, one in ones.items():
                times[name] += await _latency(one, LATENCY_CALLS // 4)
    return statistics.median(times["direct"]) * 1e6, statistics.median(times["relay"]) * 1e6


async def _batches(
    http: aiohttp.ClientSession, service: str, token: str, urls: list[str], wait: float, pid: int
) -> tuple[Rate, dict[str, int]]:
    """Send ``urls`` as calls in batches of BATCH, BATCHES_AT_ONCE requests at a time."""
    chunks = [urls[i : i + BATCH] for i in range(0, len(urls), BATCH)]
    outcomes: dict[str, int] = {}

    async def sender() -> None:
        while chunks:
            chunk = chunks.pop()
            doc = {"calls": [_call(url, None) for url in chunk], "waitSeconds": wait}
            async with http.post(f"{service}/v1/calls:batch", json=doc,
                                 headers=_headers(token)) as r:  # fmt: skip
                answer = await r.json()
                if r.status != 200:
                    raise RuntimeError(f"POST /v1/calls:batch answered {r.status}: {answer}")
            for item in answer["results"]:
                key = item.get("outcome") or item.get("state") or item["error"]["code"]
                outcomes[key] = outcomes.get(key, 0) + 1

    wall, cpu = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*(sender() for _ in range(BATCHES_AT_ONCE)))
    return Rate(len(urls), time.perf_counter() - wall, cpu_seconds(pid) - cpu), outcomes


async def _singles(
    http: aiohttp.ClientSession, service: str, token: str, urls: list[str], pid: int
) -> Rate:
    """One ``POST /v1/calls`` per URL, not waiting, from CONCURRENCY clients."""
    shared = iter(urls)

    async def client() -> None:
        for url in shared:
            async with http.post(f"{service}/v1/calls", json=_call(url, 0),
                                 headers=_headers(token)) as r:  # fmt: skip
                if r.status not in (200, 202):
                    raise RuntimeError(f"POST /v1/calls answered {r.status}: {await r.text()}")

    wall, cpu = time.perf_counter(), cpu_seconds(pid)
    await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return Rate(len(urls), time.perf_counter() - wall, cpu_seconds(pid) - cpu)


async def _throttle(http: aiohttp.ClientSession, service: str, token: str, base: str) -> None:
    """A throttling rule of QUEUE_RATE per second on the ``/queued`` paths of ``base``."""
    adobe = f"{service}/journey/orchestration/throttlingConfigs"
    doc = {"name": "bench", "urlPattern": f"{base}/queued/*", "methods": ["POST"],
           "maxThroughput": QUEUE_RATE}  # fmt: skip
    async with http.post(adobe, json=doc, headers=_headers(token)) as r:
        uid = (await r.json())["uid"]
    async with http.post(f"{adobe}/{uid}/deploy", headers=_headers(token)) as r:
        if r.status != 204:
            raise RuntimeError(f"deploying the throttling config: {r.status} {await r.text()}")


async def _compare_batches(
    http: aiohttp.ClientSession, services: dict[str, Any], urls: list[str], repeats: int
) -> dict[str, Batches]:
    """A warm-up batch on each service, then ``repeats`` timed runs of ``urls`` on each,
    alternating who goes first."""
    runs: dict[str, list[Rate]] = {name: [] for name in services}
    outcomes: dict[str, dict[str, int]] = {name: {} for name in services}
    for server in services.values():
        await _batches(http, server.base, server.token, urls[:BATCH], 30, server.process.pid)
    for round_ in range(repeats):
        names = list(services) if round_ % 2 == 0 else list(reversed(services))
        for name in names:
            server = services[name]
            rate, seen = await _batches(http, server.base, server.token, urls, 30,
                                        server.process.pid)  # fmt: skip
            runs[name].append(rate)
            for outcome, n in seen.items():
                outcomes[name][outcome] = outcomes[name].get(outcome, 0) + n
    return {name: Batches(tuple(runs[name]), outcomes[name]) for name in services}


async def measure(base: str, *, calls: int, repeats: int) -> ServiceResults:
    """Every measurement of this module against one service process relaying to ``base``
    (and, for batches, a second one on the reqwest transport)."""
    with tempfile.TemporaryDirectory(prefix="sluicegate-bench-") as tmp:
        async with (
            served(Path(tmp) / "data") as server,
            served(Path(tmp) / "reqwest", "--transport", "reqwest") as on_reqwest,
        ):
            for started in (server, on_reqwest):
                await asyncio.wait_for(started.listening.wait(), START_TIMEOUT)
                assert started.token is not None, "no development key printed"
            token, pid = server.token, server.process.pid
            relayed = relay(server.base, token, "/ok")
            cpu = cpu_seconds(pid)
            both = await compare(
                Spec("through the service", relayed), Spec("direct", bare("/ok")), base,
                calls=calls, repeats=repeats,
            )  # fmt: skip
            relayed_calls = calls * (repeats + 1)
            service_cpu_us = (cpu_seconds(pid) - cpu) / relayed_calls * 1e6
            direct_us, relay_us = await _latencies(bare("/ok"), relayed, base)
            connector = aiohttp.TCPConnector(limit=CONCURRENCY)
            async with aiohttp.ClientSession(connector=connector) as http:
                services = {"aiohttp": server, "reqwest": on_reqwest}
                batches = await _compare_batches(http, services, [f"{base}/ok"] * calls, repeats)
                await _throttle(http, server.base, token, base)
                queued = [f"{base}/queued/{n}" for n in range(calls * 2)]
                single = await _singles(http, server.base, token, queued[:calls], pid)
                batched, _ = await _batches(http, server.base, token, queued[calls:], 0, pid)
    return ServiceResults(
        relay=both,
        service_cpu_us=service_cpu_us,
        latency_direct_us=direct_us,
        latency_relay_us=relay_us,
        batch=batches["aiohttp"],
        batch_reqwest=batches["reqwest"],
        enqueue_single=single,
        enqueue_batch=batched,
    )


def targets(results: ServiceResults) -> list[Target]:
    """The service's targets: relay rate and latency, batches, enqueues."""
    relayed, direct = results.relay
    added = results.latency_relay_us - results.latency_direct_us
    return [
        Target("service, one call per request ÷ direct, calls/s",
               relayed.rate.median / direct.rate.median, 0.5, True, ratio),
        Target("service, p50 added at concurrency 1", added, 500, False, us),
        Target(f"service, POST /v1/calls:batch ({BATCH} a request), calls/s",
               results.batch.per_second.median, 10_000, True, count),
        Target("service on the reqwest transport (opt-in), POST /v1/calls:batch, calls/s",
               results.batch_reqwest.per_second.median, 10_000, True, count),
        Target("service, calls queued per second in batches",
               results.enqueue_batch.per_second, 10_000, True, count),
        Target("service, calls queued per second one per request",
               results.enqueue_single.per_second, 3_000, True, count),
    ]  # fmt: skip


def markdown(results: ServiceResults, calls: int) -> list[str]:
    """The service's section of docs/benchmarks.md."""
    relayed, direct = results.relay
    rates = Table(
        ["", "calls/s", "service CPU/call", "of which"],
        [
            ["one call per request (relayed, above)", count(relayed.rate.median),
             us(results.service_cpu_us), "the call's own request to the system included"],
            _batch_row("", results.batch),
            _batch_row(", on the reqwest transport", results.batch_reqwest),
            ["queued, one `POST /v1/calls` per call (`waitSeconds` 0)",
             count(results.enqueue_single.per_second), us(results.enqueue_single.cpu_us),
             "no request to the system"],
            [f"queued, `POST /v1/calls:batch` of {BATCH}", count(results.enqueue_batch.per_second),
             us(results.enqueue_batch.cpu_us), "no request to the system"],
        ],
    )  # fmt: skip
    return [
        "## 5. Through the service",
        "One `sluicegate serve --dev` process (SQLite, in a temporary directory) relays calls "
        "to the loopback server of section 2. The same aiohttp client, at concurrency "
        f"{CONCURRENCY}, calls the server directly or through `POST /v1/calls` "
        "(`waitSeconds` 30: the answer is the call's result), alternately, "
        f"{calls:,} calls a run. Service CPU is the service process's, per call.",
        _calls_table([relayed, direct]),
        f"At concurrency 1, a call's median time is {us(results.latency_direct_us)} direct and "
        f"{us(results.latency_relay_us)} through the service "
        f"({LATENCY_CALLS} calls each, interleaved).",
        f"Batches ({BATCHES_AT_ONCE} requests of {BATCH} calls at once, median and range of "
        f"{len(results.batch.runs)} runs of {calls:,} calls, alternately against a second "
        "service started with `--transport reqwest`, opt-in: [engine.md](engine.md#transports) "
        "says what it does not guarantee yet) and calls queued behind a throttling rule of "
        f"{QUEUE_RATE} calls/s (each queued call is stored in the engine's journal before "
        "its answer):",
        rates.markdown(),
        "A relayed call costs the service about what the library's call costs its client "
        "plus the inbound request: the request to the external system (aiohttp), the "
        "guardrails, the call log's row, and the HTTP request and answer. A batch saves only "
        "the inbound request's share; see [performance.md](performance.md) for where the "
        "rest goes.",
    ]


def _batch_row(on: str, batches: Batches) -> list[str]:
    rate = batches.per_second
    return [f"`POST /v1/calls:batch`, {BATCH} calls a request{on}",
            f"{count(rate.median)} ({span(rate, count)})", us(batches.cpu_us),
            ", ".join(f"{n:,} {o}" for o, n in sorted(batches.outcomes.items()))]  # fmt: skip


def _calls_table(contenders: list[Contender]) -> str:
    return Table(
        ["contender", "calls/s (median)", "min … max", "client CPU/call"],
        [[c.name, count(c.rate.median), span(c.rate, count), us(c.cpu_us.median)]
         for c in contenders],
    ).markdown()  # fmt: skip
