"""Throttled calls survive a crash: journaled before they wait, delivered after restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import System, serve_system, until

from conftest import API, GUARD_MS, ORG, SANDBOX, capping, deploy, throttling
from sluicegate.configs import ConfigKind
from sluicegate.errors import StorageError
from sluicegate.gate import Gate
from sluicegate.outcomes import Outcome
from sluicegate.settings import HOUR, Settings
from sluicegate.testing import FakeClock, MockTransport
from sluicegate.transport import Response

CALLS = 1000

# The child: deploys a 200/s throttle on the parent's system, submits CALLS calls (the
# first 200 go at once, the rest are journaled and queued), says so, then waits forever.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from sluicegate import Gate, ConfigKind, Settings

    async def main(data_dir, base):
        settings = Settings(allow_loopback=True)
        async with Gate.open(data_dir, settings=settings) as gate:
            payload = {"urlPattern": base + "/*", "methods": ["POST"], "maxThroughput": 200}
            scope = {"org": "acme", "sandbox": "prod"}
            record = await gate.rules.create(ConfigKind.THROTTLING, payload=payload, **scope)
            await gate.rules.deploy(ConfigKind.THROTTLING, uid=record.uid, **scope)
            for i in range(CALLS):
                await gate.submit(org="acme", sandbox="prod", journey="j", service="action",
                                  method="POST", url=f"{base}/call/{i}")
            print("SUBMITTED", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
).replace("CALLS", str(CALLS))


@pytest.fixture
async def system(clock: FakeClock) -> AsyncIterator[System]:
    """An external system on loopback that records the call number of every delivery."""
    async with serve_system(clock) as served:
        yield served


async def test_sigkill_loses_no_queued_call(tmp_path: Path, system: System) -> None:
    """A process killed with SIGKILL while holding a full throttling queue loses nothing:
    after restart every queued call is delivered, window after window in arrival order."""
    base, delivered = system.base, system.delivered
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(tmp_path), base,
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert child.stdout is not None
        async with asyncio.timeout(60):
            line = await child.stdout.readline()
        assert b"SUBMITTED\n" == line
        child.send_signal(signal.SIGKILL)
        await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert -signal.SIGKILL == child.returncode
    await until(lambda: system.connections() == 0)  # what the child sent is all handled
    before = len(delivered)
    assert before < CALLS  # the kill did find calls still queued

    # Fake time moves in small steps: a call's 30 s budget then outlasts seconds of real
    # I/O on a busy machine, and a call that ended otherwise fails the test at once.
    clock = FakeClock(start=time.time())
    async with Gate.open(tmp_path, settings=Settings(allow_loopback=True), clock=clock) as gate:
        async with asyncio.timeout(30):
            while set(delivered) != set(range(CALLS)):
                assert set(gate.counters.outcomes()) <= {Outcome.SUCCESS}
                await clock.advance(0.1)
                await asyncio.sleep(0.01)  # let the deliveries' real I/O complete
    # FIFO after restart: the calls of one window leave at once, over connections of their
    # own, and may arrive interleaved; none arrives after a call a window (200) behind it.
    redelivered, ahead, late = delivered[before:], -1, 0
    for n in redelivered:
        ahead = max(ahead, n)
        late = max(late, ahead - n)
    assert late < 200, late


async def test_queued_calls_expire_after_six_hours_across_a_restart(tmp_path: Path) -> None:
    """A call still queued 6 hours after it arrived leaves with outcome expired, even when
    the engine restarted in between; calls younger than that are delivered."""
    clock = FakeClock()
    transport = MockTransport(lambda _: Response(status=200))
    call = {"org": ORG, "sandbox": SANDBOX, "journey": "j", "service": "action",
            "method": "POST", "url": f"{API}/x"}  # fmt: skip
    async with Gate.open(tmp_path, clock=clock, transport=transport) as gate:
        await deploy(gate, ConfigKind.THROTTLING, throttling(f"{API}/*", 200))
        first = [await gate.submit(**call) for _ in range(300)]
        assert 100 == sum(h.state == "queued" for h in first)
    await clock.advance(6 * HOUR)
    async with Gate.open(tmp_path, clock=clock, transport=transport) as gate:
        await until(lambda: {Outcome.EXPIRED: 100} == gate.counters.outcomes())
        assert [] == await gate.queues()
    assert 200 == len(transport.requests)


async def test_a_restart_keeps_capping_windows_exact(tmp_path: Path) -> None:
    """Grants made before a graceful restart still count after it: the window that was
    full stays full until its grants leave it."""
    clock = FakeClock()
    transport = MockTransport(lambda _: Response(status=200))
    call = {"org": ORG, "sandbox": SANDBOX, "journey": "j", "service": "action",
            "method": "POST", "url": f"{API}/x"}  # fmt: skip
    async with Gate.open(tmp_path, clock=clock, transport=transport) as gate:
        await deploy(gate, ConfigKind.CAPPING, capping(f"{API}/*", 5))
        assert {Outcome.SUCCESS} == {(await gate.call(**call)).outcome for _ in range(5)}
    await clock.advance(0.5)
    async with Gate.open(tmp_path, clock=clock, transport=transport) as gate:
        assert Outcome.CAPPED is (await gate.call(**call)).outcome
        await clock.advance(0.5 + GUARD_MS / 1000)
        assert Outcome.SUCCESS is (await gate.call(**call)).outcome


async def test_a_call_whose_slot_cannot_be_recorded_is_never_sent(
    tmp_path: Path, open_gate: Any
) -> None:
    """A journal that cannot record a slot (a full disk, here a missing table) lets no
    request leave: a direct call ends ``capped`` with the storage error and no attempt; a
    throttled call is refused (StorageError) rather than let in and dropped."""
    gate, transport = await open_gate(lambda request: Response(status=200), tmp_path)
    await deploy(gate, ConfigKind.THROTTLING, throttling(f"{API}/queued/*", 200))
    await gate._backend._db.execute("sabotage", "DROP TABLE slots")

    direct = await gate.call(org=ORG, sandbox=SANDBOX, journey="j", service="action",
                             method="POST", url=f"{API}/direct")  # fmt: skip
    with pytest.raises(StorageError):
        await gate.submit(org=ORG, sandbox=SANDBOX, journey="j", service="action",
                          method="POST", url=f"{API}/queued/1")  # fmt: skip

    assert (Outcome.CAPPED, 0, []) == (direct.outcome, direct.attempts, transport.requests)
    assert direct.error is not None
    assert "no capping decision" in direct.error.message
