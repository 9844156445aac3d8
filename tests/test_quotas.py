"""Per-org quotas: one org's calls in flight and queued never crowd out another org's.

Calls go to a scripted transport whose requests wait until the test lets them answer,
so that "in flight" is a state the test holds, not a race.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from conftest import API, SANDBOX, throttling
from sluicegate.configs import ConfigKind
from sluicegate.errors import TooManyCalls
from sluicegate.gate import Gate
from sluicegate.outcomes import Outcome
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock, MockTransport, settle
from sluicegate.transport import Request, Response

FLOODER, OTHER = "flooder@AdobeOrg", "other@AdobeOrg"


class Held:
    """Answers 200 once the test opens the gate (``open``); until then requests wait."""

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def __call__(self, request: Request) -> Response:
        await self.open.wait()
        return Response(status=200)


@pytest.fixture
async def held() -> Held:
    return Held()


@pytest.fixture
async def gate(clock: FakeClock, held: Held) -> AsyncIterator[Gate]:
    settings = Settings(max_in_flight_per_org=3, max_queued_per_org=2)
    async with Gate.open(clock=clock, transport=MockTransport(held), settings=settings) as gate:
        yield gate


def parts(org: str, path: str = "x") -> dict[str, Any]:
    return {"org": org, "sandbox": SANDBOX, "journey": "j", "service": "action",
            "method": "POST", "url": f"{API}/{path}"}  # fmt: skip


async def test_an_org_with_its_quota_in_flight_is_refused_and_another_is_not(
    gate: Gate, held: Held
) -> None:
    """Three calls of one org in flight: its fourth is refused (by submit and by call)
    with TOO_MANY_CALLS_IN_FLIGHT; another org's call runs; once the three have ended,
    the org's calls are accepted again."""
    handles = [await gate.submit(**parts(FLOODER)) for _ in range(3)]
    with pytest.raises(TooManyCalls) as submitted:
        await gate.submit(**parts(FLOODER))
    with pytest.raises(TooManyCalls):
        await gate.call(**parts(FLOODER))
    other = asyncio.create_task(gate.call(**parts(OTHER)))
    await settle()
    held.open.set()

    assert "TOO_MANY_CALLS_IN_FLIGHT" == submitted.value.code
    assert Outcome.SUCCESS == (await other).outcome
    assert [Outcome.SUCCESS] * 3 == [(await handle.result()).outcome for handle in handles]
    assert Outcome.SUCCESS == (await gate.call(**parts(FLOODER))).outcome


async def test_an_org_with_its_quota_queued_is_refused_and_another_is_not(
    gate: Gate, held: Held, clock: FakeClock
) -> None:
    """A throttled endpoint with its second's slots taken: an org's calls queue up to
    its quota of 2, the next is refused with TOO_MANY_CALLS_QUEUED; another org's calls
    to its own throttled endpoint are taken; the refused org's queued calls still run."""
    for org in (FLOODER, OTHER):
        record = await gate.rules.create(ConfigKind.THROTTLING, org=org, sandbox=SANDBOX,
                                         payload=throttling(f"{API}/q/*", 200))  # fmt: skip
        await gate.rules.deploy(ConfigKind.THROTTLING, uid=record.uid, org=org, sandbox=SANDBOX)
    held.open.set()
    for _ in range(200):  # the second's slots
        await gate.call(**parts(FLOODER, "q/1"))
    queued = [await gate.submit(**parts(FLOODER, "q/1")) for _ in range(2)]
    with pytest.raises(TooManyCalls) as refused:
        await gate.submit(**parts(FLOODER, "q/1"))
    theirs = [await gate.submit(**parts(OTHER, "q/1")) for _ in range(2)]

    assert "TOO_MANY_CALLS_QUEUED" == refused.value.code
    assert ["queued", "queued"] == [handle.state for handle in queued]
    await clock.advance(2)
    ended = [(await handle.result()).outcome for handle in queued + theirs]
    assert [Outcome.SUCCESS] * 4 == ended
