"""Shared fixtures: a fake clock and a gate on it with a scripted transport."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock, MockTransport
from sluicegate.transport import Request, Response

ORG = "acme@AdobeOrg"
SANDBOX = "prod"
API = "https://api.example.org"
#: The default guard band: a slot is held this long after its rule's period.
GUARD_MS = Settings().send_guard_ms

Handler = Callable[[Request], Response | Awaitable[Response]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def deploy(gate: Gate, kind: ConfigKind, payload: dict[str, Any], **where: str) -> str:
    """Create and deploy a config; return its uid."""
    scope = {"org": ORG, "sandbox": SANDBOX, **where}
    record = await gate.rules.create(kind, payload=payload, **scope)
    await gate.rules.deploy(kind, uid=record.uid, **scope)
    return record.uid


def capping(url: str, count: int, period_ms: int = 1000, **extra: Any) -> dict[str, Any]:
    service = {"rating": {"maxCallsCount": count, "periodInMs": period_ms}, **extra}
    return {"url": url, "methods": ["GET", "POST"], "services": {"action": service}}


def throttling(url: str, rate: int) -> dict[str, Any]:
    return {"name": "t", "urlPattern": url, "methods": ["POST"], "maxThroughput": rate}


@pytest.fixture
async def open_gate(clock: FakeClock) -> AsyncIterator[Callable[..., Any]]:
    """Open gates on the fake clock; each is closed at the end of the test."""
    stack: list[Any] = []

    async def opener(handler: Handler, data_dir: Any = None) -> tuple[Gate, MockTransport]:
        transport = MockTransport(handler)
        manager = Gate.open(data_dir, clock=clock, transport=transport)
        gate = await manager.__aenter__()
        stack.append(manager)
        return gate, transport

    yield opener
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)
