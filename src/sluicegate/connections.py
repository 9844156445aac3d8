"""The connection limit: at most ``maxHttpConnections`` attempts in flight per endpoint.

Waiting for a connection happens inside the call's budget. The limit is per process in
embedded mode; a changed limit takes effect for attempts that start after the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ConnectionLimits:
    """One semaphore per connection key, sized by the capping rule's ``maxHttpConnections``."""

    __slots__ = ("_limits",)

    def __init__(self) -> None:
        self._limits: dict[str, tuple[int, asyncio.Semaphore]] = {}

    def _semaphore(self, key: str, limit: int) -> asyncio.Semaphore:
        current = self._limits.get(key)
        if current is None or current[0] != limit:
            # Holders of the old semaphore release into it; new attempts use the new size.
            current = self._limits[key] = (limit, asyncio.Semaphore(limit))
        return current[1]

    @asynccontextmanager
    async def hold(self, key: str, limit: int) -> AsyncIterator[None]:
        """Hold one of ``limit`` connections of ``key`` for the enclosed attempt."""
        semaphore = self._semaphore(key, limit)
        async with semaphore:
            yield

    def in_use(self, key: str) -> int:
        """Connections of ``key`` held right now."""
        current = self._limits.get(key)
        if current is None:
            return 0
        limit, semaphore = current
        return limit - semaphore._value  # asyncio.Semaphore exposes no public count
