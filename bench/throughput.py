"""Calls per second through the gate against what a user would write instead.

Each contender is an async context manager that opens its client and yields ``one()``,
which makes one logical call and says whether it ended with a 2xx. :func:`compare` runs
two contenders against the same loopback server at the same concurrency: a warm-up of
each (connections opened, caches filled), then timed runs in alternating order so that
drift on a shared machine does not favour either side.

Attempts are counted by the server, so both sides of a comparison are counted alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import aiohttp
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    wait_none,
)

from loopback import server_stats
from measure import Series
from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.outcomes import Outcome
from sluicegate.settings import Settings
from sluicegate.transport import Transport

CONCURRENCY = 64
BODY = b"{}"
TIMEOUT_SECONDS = 30  # the library's default budget; the tenacity loop's attempt timeout
ORG, SANDBOX, JOURNEY = "bench", "prod", "bench"
#: The rate of a capping rule that never triggers; without one, the action default
#: (300,000 calls per 60 s per host) would cap a long run.
UNREACHABLE_CAP = 1_000_000_000

OneCall = Callable[[], Awaitable[bool]]
Opener = Callable[[str], AbstractAsyncContextManager[OneCall]]


@dataclass(frozen=True, slots=True)
class Spec:
    """A contender: its name, and how to open it on a URL."""

    name: str
    open: Opener


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run of ``calls`` calls."""

    calls: int
    wall: float
    cpu: float
    attempts: int
    failed_attempts: int  # answered 500 by the server on purpose
    failed: int  # calls that ended without a 2xx
    server_cpu: float


@dataclass(frozen=True, slots=True)
class Contender:
    """A contender's figures over the timed runs."""

    name: str
    rate: Series  # calls per second
    cpu_us: Series  # client CPU microseconds per call
    client_load: Series  # client CPU seconds per wall second (1.0: one core busy)
    server_load: Series  # the same for the server process
    attempts_per_call: float
    failed_attempts: float  # share of the attempts the server failed on purpose
    failed: int  # calls that ended without a 2xx, over every timed run

    @classmethod
    def of(cls, name: str, runs: list[Run]) -> Contender:
        calls = sum(run.calls for run in runs)
        attempts = sum(run.attempts for run in runs)
        return cls(
            name=name,
            rate=Series(tuple(run.calls / run.wall for run in runs)),
            cpu_us=Series(tuple(run.cpu / run.calls * 1e6 for run in runs)),
            client_load=Series(tuple(run.cpu / run.wall for run in runs)),
            server_load=Series(tuple(run.server_cpu / run.wall for run in runs)),
            attempts_per_call=attempts / calls,
            failed_attempts=sum(run.failed_attempts for run in runs) / attempts,
            failed=sum(run.failed for run in runs),
        )


def library(settings: Settings, path: str, transport: Transport | None = None) -> Opener:
    """sluicegate on the memory backend and its default aiohttp transport (or ``transport``)."""

    @asynccontextmanager
    async def open_gate(base: str) -> AsyncIterator[OneCall]:
        url = f"{base}{path}"
        async with Gate.open(None, settings=settings, transport=transport) as gate:
            await deploy_cap(gate, base)

            async def one() -> bool:
                result = await gate.call(
                    org=ORG, sandbox=SANDBOX, journey=JOURNEY, service="action",
                    method="POST", url=url, body=BODY,
                )  # fmt: skip
                return result.outcome is Outcome.SUCCESS

            yield one

    return open_gate


async def deploy_cap(gate: Gate, base: str) -> None:
    """Deploy the capping rule of :func:`library` on ``base``: a rate never reached, from
    whose exact window every call takes a slot."""
    scope = {"org": ORG, "sandbox": SANDBOX}
    rating = {"maxCallsCount": UNREACHABLE_CAP, "periodInMs": 1000}
    rule = {"url": f"{base}/*", "methods": ["POST"], "services": {"action": {"rating": rating}}}
    record = await gate.rules.create(ConfigKind.CAPPING, payload=rule, **scope)
    await gate.rules.deploy(ConfigKind.CAPPING, uid=record.uid, **scope)


def bare(path: str) -> Opener:
    """A default aiohttp session: ``session.post`` and ``resp.read()``, nothing else."""

    @asynccontextmanager
    async def open_session(base: str) -> AsyncIterator[OneCall]:
        url = f"{base}{path}"
        async with aiohttp.ClientSession() as session:

            async def one() -> bool:
                async with session.post(url, data=BODY) as resp:
                    await resp.read()
                    return resp.status == 200

            yield one

    return open_session


def _retryable(status: int) -> bool:
    """sluicegate's rule: retry any non-2xx except 401, 403 and 404."""
    return not 200 <= status < 300 and status not in (401, 403, 404)


def _last_status(state: RetryCallState) -> int:
    """After the last attempt: its status (or its exception, raised again)."""
    assert state.outcome is not None
    status: int = state.outcome.result()
    return status


def with_tenacity(path: str) -> Opener:
    """The loop a user writes: aiohttp, tenacity (3 retries, no wait) and asyncio.timeout."""

    @asynccontextmanager
    async def open_session(base: str) -> AsyncIterator[OneCall]:
        url = f"{base}{path}"
        async with aiohttp.ClientSession() as session:

            @retry(
                stop=stop_after_attempt(4),
                wait=wait_none(),
                retry=retry_if_exception_type((aiohttp.ClientError, TimeoutError))
                | retry_if_result(_retryable),
                retry_error_callback=_last_status,
            )
            async def post() -> int:
                async with asyncio.timeout(TIMEOUT_SECONDS), session.post(url, data=BODY) as resp:
                    await resp.read()
                    return resp.status

            async def one() -> bool:
                try:
                    return 200 <= await post() < 300
                except (aiohttp.ClientError, TimeoutError):
                    return False

            yield one

    return open_session


async def drive(
    one: OneCall, calls: int, concurrency: int = CONCURRENCY
) -> tuple[float, float, int]:
    """Make ``calls`` calls from ``concurrency`` tasks: wall seconds, CPU seconds, failures."""
    remaining = calls
    failed = 0

    async def worker() -> None:
        nonlocal remaining, failed
        while remaining > 0:
            remaining -= 1
            if not await one():
                failed += 1

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu, failed


async def drive_ok(one: OneCall, calls: int, concurrency: int = CONCURRENCY) -> tuple[float, float]:
    """:func:`drive` where every call must succeed: wall and CPU seconds."""
    wall, cpu, failed = await drive(one, calls, concurrency)
    if failed:
        raise RuntimeError(f"{failed} of {calls} calls failed")
    return wall, cpu


async def _timed_run(one: OneCall, base: str, calls: int) -> Run:
    """:func:`drive`, with what the server did meanwhile."""
    before = server_stats(base)
    wall, cpu, failed = await drive(one, calls)
    after = server_stats(base)
    return Run(
        calls=calls,
        wall=wall,
        cpu=cpu,
        attempts=after.requests - before.requests,
        failed_attempts=after.failed - before.failed,
        failed=failed,
        server_cpu=after.cpu_seconds - before.cpu_seconds,
    )


async def compare(
    first: Spec, second: Spec, base: str, *, calls: int, repeats: int
) -> tuple[Contender, Contender]:
    """A warm-up of each, then ``repeats`` timed runs of each, alternating who goes first."""
    async with first.open(base) as call_first, second.open(base) as call_second:
        ones = {first.name: call_first, second.name: call_second}
        runs: dict[str, list[Run]] = {first.name: [], second.name: []}
        for one in ones.values():
            await drive(one, calls)
        for round_ in range(repeats):
            order = (first.name, second.name) if round_ % 2 == 0 else (second.name, first.name)
            for name in order:
                runs[name].append(await _timed_run(ones[name], base, calls))
    return Contender.of(first.name, runs[first.name]), Contender.of(second.name, runs[second.name])
