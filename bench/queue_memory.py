"""Memory held per call waiting in a throttling queue (memory backend).

A throttling rule of 200 calls/s is deployed and its first window is used up; with a
:class:`FakeClock` that never moves, every call submitted afterwards stays queued.
tracemalloc measures what ``count`` more submissions hold once they are queued: the
call, its journal entry, its task and coroutine frames, its handle and its waiter.
"""

from __future__ import annotations

import gc
import tracemalloc

from measure import Series
from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.testing import FakeClock, MockTransport, settle
from sluicegate.transport import Request, Response

RATE = 200  # the lowest maxThroughput a throttling rule may have
URL = "https://api.example.org/notify"
ORG, SANDBOX, JOURNEY = "bench", "prod", "bench"


def _ok(request: Request) -> Response:
    return Response(status=200)


async def bytes_per_queued_call(count: int) -> float:
    """Bytes allocated and still held per queued call, after ``count`` were queued."""
    async with Gate.open(None, clock=FakeClock(), transport=MockTransport(_ok)) as gate:
        scope = {"org": ORG, "sandbox": SANDBOX}
        rule = {"name": "bench", "urlPattern": "https://api.example.org/*",
                "methods": ["POST"], "maxThroughput": RATE}  # fmt: skip
        record = await gate.rules.create(ConfigKind.THROTTLING, payload=rule, **scope)
        await gate.rules.deploy(ConfigKind.THROTTLING, uid=record.uid, **scope)

        async def submit() -> None:
            await gate.submit(
                org=ORG, sandbox=SANDBOX, journey=JOURNEY, service="action",
                method="POST", url=URL, body=b"{}",
            )  # fmt: skip

        for _ in range(RATE + 1):  # the window's slots, then one queued call
            await submit()
        await settle()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(count):
                await submit()
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        (queue,) = gate.queues()
        if queue.depth != count + 1:
            raise RuntimeError(f"expected {count + 1} queued calls, found {queue.depth}")
    return held / count


async def measure(count: int, repeats: int) -> Series:
    """A warm-up, then ``repeats`` measurements of :func:`bytes_per_queued_call`, each on
    a fresh gate (the warm-up pays for one-time allocations: imports, caches, code)."""
    await bytes_per_queued_call(count)
    return Series(tuple([await bytes_per_queued_call(count) for _ in range(repeats)]))
