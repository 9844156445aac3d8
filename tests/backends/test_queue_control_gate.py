"""An operator's controls through the gate, on every backend: ``gate.queue(key)``.

A real external system on loopback records what arrives (each request names its call in
its ``Idempotency-Key``); the clock is fake, and the waits on ``until`` are for I/O only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from tests.loopback import serve_recording, until
from tests.services import shared

from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.handle import CallHandle
from sluicegate.matching import throttle_key
from sluicegate.outcomes import Outcome
from sluicegate.settings import HOUR, Settings
from sluicegate.testing import FakeClock
from sluicegate.throttle import SCAN_EVERY
from sluicegate.wiring import Storage

ORG = "acme"
RATE = 200  # the least maxThroughput a throttling config may have
WINDOW = 1 + Settings().send_guard_ms / 1000  # a throttling slot's hold, in seconds
DATA_KEY = bytes(range(32))
Recording = tuple[str, list[web.Request]]


@pytest.fixture(params=["memory", "sqlite", "shared", "sqlite-sealed", "shared-sealed"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Storage, Settings]]:
    """Where a gate keeps its queues, and its settings (a data key for the sealed ones)."""
    keys = (DATA_KEY,) if request.param.endswith("-sealed") else ()
    settings = Settings(allow_loopback=True, data_keys=keys)
    kind = request.param.removesuffix("-sealed")
    if kind == "shared":
        async with shared() as where:
            yield replace(where, server_time=False), settings
    else:
        yield (None if kind == "memory" else tmp_path / "data"), settings


@pytest.fixture
async def recording() -> AsyncIterator[Recording]:
    async with serve_recording() as found:
        yield found


async def throttled(gate: Gate, base: str) -> str:
    """Deploy a throttling config of :data:`RATE` on ``base``; its queue's key."""
    scope = {"org": ORG, "sandbox": "prod"}
    payload = {"name": "t", "urlPattern": f"{base}/*", "methods": ["POST"], "maxThroughput": RATE}
    record = await gate.rules.create(ConfigKind.THROTTLING, payload=payload, **scope)
    await gate.rules.deploy(ConfigKind.THROTTLING, uid=record.uid, **scope)
    return throttle_key(ORG, record.uid)


async def submit(gate: Gate, base: str, names: range) -> list[CallHandle]:
    """Submit a call to ``<base>/c<n>`` for each ``n`` of ``names``, call id ``c<n>``."""
    return [await gate.submit(org=ORG, sandbox="prod", journey="j", service="action",
                              method="POST", url=f"{base}/c{n}", call_id=f"c{n}")
            for n in names]  # fmt: skip


def arrived(requests: list[web.Request]) -> list[str]:
    return [request.headers["Idempotency-Key"] for request in requests]


async def advancing(clock: FakeClock, done: Callable[[], bool], step: float) -> None:
    """Move the clock ``step`` at a time until ``done()``, letting I/O happen in between."""
    async with asyncio.timeout(10):
        while not done():
            await clock.advance(step)
            await asyncio.sleep(0.001)


async def test_a_paused_queue_sends_nothing_then_drains_in_order_once_resumed(
    storage: tuple[Storage, Settings], recording: Recording
) -> None:
    """Paused, even an empty window lets no call through: each is queued, and none is
    sent however long the pause. Resumed, the queue drains at its rate, oldest first: the
    first window takes the oldest 200, the next one the rest."""
    (where, settings), (base, requests), clock = storage, recording, FakeClock()
    async with Gate.open(where, settings=settings, clock=clock) as gate:
        queue = gate.queue(await throttled(gate, base))
        paused = await queue.pause()
        handles = await submit(gate, base, range(RATE + 3))
        assert (True, 0, {"queued"}) == (paused.paused, paused.depth,
                                         {handle.state for handle in handles})  # fmt: skip
        for _ in range(3):
            await clock.advance(SCAN_EVERY + WINDOW)
        state = await queue.state()
        assert (True, RATE + 3, RATE, []) == (state.paused, state.depth, state.rate,
                                              arrived(requests))  # fmt: skip
        assert False is (await queue.resume()).paused
        await until(lambda: len(requests) == RATE)
        assert ({f"c{n}" for n in range(RATE)}, 3) == (set(arrived(requests)),
                                                        (await queue.state()).depth)  # fmt: skip
        await advancing(clock, lambda: all(handle.done() for handle in handles), WINDOW / 4)
        results = [await handle.result() for handle in handles]
        assert {f"c{n}" for n in range(RATE, RATE + 3)} == set(arrived(requests)[RATE:])
        assert all(r.outcome is Outcome.SUCCESS and r.queued_ms >= 6000 for r in results)


async def test_a_purge_ends_waiting_calls_unsent_and_spares_dispatched_ones(
    storage: tuple[Storage, Settings], recording: Recording
) -> None:
    """A purge made as the dispatcher takes calls: every call is either sent or purged,
    never both; the purged end ``expired``, "purged by an operator", without an attempt,
    and the purge counts them."""
    (where, settings), (base, requests), clock = storage, recording, FakeClock()
    async with Gate.open(where, settings=settings, clock=clock) as gate:
        queue = gate.queue(await throttled(gate, base))
        handles = await submit(gate, base, range(RATE + 60))  # 200 go at once, 60 wait
        purging = asyncio.create_task(queue.purge())
        await clock.advance(WINDOW)  # the dispatcher claims as the purge takes
        count = await purging
        ids = [handle.call_id for handle in handles]
        await until(lambda: all(h.done() for h in handles) and not any(map(gate.running, ids)))
        results = [await handle.result() for handle in handles]
        gone = {r.call_id for r in results if r.outcome is Outcome.EXPIRED}
        assert (count, set()) == (len(gone), gone & set(arrived(requests)))
        assert set(ids) - gone == set(arrived(requests))
        assert {("purged by an operator", 0)} == {
            (r.error.message if r.error else "", r.attempts)
            for r in results if r.outcome is Outcome.EXPIRED
        }  # fmt: skip
        assert 0 == (await queue.state()).depth


async def test_a_paused_queue_still_expires_its_calls(
    storage: tuple[Storage, Settings], recording: Recording
) -> None:
    """A call waiting in a paused queue leaves it ``expired`` six hours after it was
    queued, unsent: paused time counts."""
    (where, settings), (base, requests), clock = storage, recording, FakeClock()
    async with Gate.open(where, settings=settings, clock=clock) as gate:
        queue = gate.queue(await throttled(gate, base))
        await queue.pause()
        [handle] = await submit(gate, base, range(1))
        await clock.advance(6 * HOUR - SCAN_EVERY)
        assert "queued" == handle.state
        await advancing(clock, handle.done, SCAN_EVERY)
        result = await handle.result()
        assert (Outcome.EXPIRED, "six hours in the throttling queue", []) == (
            result.outcome, result.error and result.error.message, arrived(requests))  # fmt: skip


async def test_a_pause_holds_for_every_instance_on_a_shared_store(recording: Recording) -> None:
    """One instance pauses; another admits its new calls into the queue (not through the
    free window) and sends none; once the first resumes, they are sent."""
    (base, requests), clock = recording, FakeClock()
    settings = Settings(allow_loopback=True)
    async with (
        shared() as where,
        Gate.open(replace(where, server_time=False), settings=settings, clock=clock) as one,
        Gate.open(replace(where, server_time=False), settings=settings, clock=clock) as other,
    ):
        key = await throttled(one, base)
        await until_seen(other, key)
        await one.queue(key).pause()
        handles = await submit(other, base, range(3))
        for _ in range(3):
            await clock.advance(SCAN_EVERY + WINDOW)
        assert (["queued"] * 3, 3, []) == (
            [handle.state for handle in handles], (await other.queue(key).state()).depth,
            arrived(requests),
        )  # fmt: skip
        await one.queue(key).resume()
        await advancing(clock, lambda: len(requests) == 3, SCAN_EVERY)
        assert ["c0", "c1", "c2"] == sorted(arrived(requests))


async def until_seen(gate: Gate, key: str) -> None:
    """Make ``gate`` load the deployed config of queue ``key`` from the shared store (its
    notice may come before the gate listens)."""
    uid = key.rpartition(":")[2]
    async with asyncio.timeout(10):
        while gate.rules.enforced(uid) is None:
            await gate.rules.reload()
