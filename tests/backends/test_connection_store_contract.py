"""The ConnectionStore contract: at most ``limit`` holders of a key at once, the others
waiting their turn; each backend's own count of what it holds."""

from __future__ import annotations

import asyncio

from tests.loopback import until

from sluicegate.storage import Backend


async def test_at_most_the_limit_hold_a_key_at_once(backend: Backend) -> None:
    """Five requests on a limit of two: two hold at once, the others wait and get their
    turn as holders leave; another key is not held back."""
    inside: list[int] = []
    most = 0
    leave = [asyncio.Event() for _ in range(5)]

    async def request(n: int) -> None:
        nonlocal most
        async with backend.connections.hold("k", 2):
            inside.append(n)
            most = max(most, len(inside))
            await leave[n].wait()
            inside.remove(n)

    tasks = [asyncio.create_task(request(n)) for n in range(5)]
    await until(lambda: len(inside) == 2)
    async with backend.connections.hold("other", 1):
        assert 1 == backend.connections.in_use("other")
    assert 2 == backend.connections.in_use("k")
    for _ in range(5):  # let one out at a time, whoever came in first
        await until(lambda: any(not leave[n].is_set() for n in inside))
        leave[next(n for n in inside if not leave[n].is_set())].set()
    await asyncio.gather(*tasks)
    assert (2, 0) == (most, backend.connections.in_use("k"))
