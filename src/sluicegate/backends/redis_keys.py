"""Names of the keys the Redis backend keeps, and its one way to ask Redis.

Every key of one limit, queue or connection pool shares the hash tag ``{<key>}``, so that
a script over them touches one Redis Cluster slot. See :mod:`sluicegate.backends.redis`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import RedisError

from sluicegate.errors import StorageError

_T = TypeVar("_T")


async def ask(what: str, request: Awaitable[_T]) -> _T:
    """Await a Redis request; its failure is a :class:`StorageError`."""
    try:
        return await request
    except (RedisError, OSError) as exc:
        raise StorageError(f"{what}: Redis is unavailable ({exc})") from exc


class Keys:
    """The names of every key, each group under the hash tag of its limit or queue."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index = f"{prefix}:calls"  # call id -> its queue
        self.queues = f"{prefix}:queues"

    def slot(self, key: str) -> tuple[str, str, str]:
        """sent, held, pause"""
        base = f"{self.prefix}:{{{key}}}"
        return f"{base}:sent", f"{base}:held", f"{base}:pause"

    def queue(self, queue: str) -> tuple[str, str, str, str, str]:
        """seq, waiting, claimed, data, meta"""
        base = f"{self.prefix}:{{{queue}}}"
        return f"{base}:seq", f"{base}:q", f"{base}:claimed", f"{base}:data", f"{base}:meta"

    def paused(self, queue: str) -> str:
        """Set while ``queue`` is paused (beside the queue's keys, in its hash slot)."""
        return f"{self.prefix}:{{{queue}}}:paused"

    def connections(self, key: str) -> str:
        return f"{self.prefix}:{{{key}}}:conns"
