"""The one place where backends and the default transport are chosen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sluicegate.backends.memory import MemoryBackend
from sluicegate.egress import EgressPolicy
from sluicegate.sealing import Sealer
from sluicegate.settings import Settings
from sluicegate.storage import Backend
from sluicegate.transport import Transport


@dataclass(frozen=True, slots=True, kw_only=True)
class Shared:
    """Storage shared by several instances: slots, queues and connection limits in Redis
    at ``redis_url``; configs (and the service's tables) in PostgreSQL at
    ``postgres_url``. ``prefix`` starts every Redis key, so that several deployments can
    share one Redis. ``server_time=False`` decides windows by the caller's clock (tests)."""

    redis_url: str
    postgres_url: str
    prefix: str = "sg"
    server_time: bool = True


#: Where a gate keeps its state: nowhere (memory), a data directory (SQLite), or shared.
Storage = str | Path | Shared | None


async def open_backend(where: Storage, data_keys: Sequence[bytes] = ()) -> Backend:
    """Memory when ``where`` is None; SQLite in a data directory; or Redis + PostgreSQL.
    With ``data_keys``, queued calls are sealed at rest (:mod:`sluicegate.sealing`)."""
    if where is None:
        return MemoryBackend()  # nothing at rest
    sealer = Sealer(data_keys) if data_keys else None
    if isinstance(where, Shared):
        return await _open_shared(where, sealer)
    from sluicegate.backends.sqlite import SqliteBackend

    return await SqliteBackend.open(Path(where), sealer)


async def _open_shared(shared: Shared, sealer: Sealer | None) -> Backend:
    from sluicegate.backends.postgres import (
        CONFIG_MIGRATIONS,
        PostgresConfigStore,
        PostgresDatabase,
    )
    from sluicegate.backends.redis import RedisBackend

    db = PostgresDatabase(shared.postgres_url, component="engine", migrations=CONFIG_MIGRATIONS)
    try:
        await db.start()
        return await RedisBackend.open(
            shared.redis_url, PostgresConfigStore(db), prefix=shared.prefix,
            server_time=shared.server_time, closing=db.aclose, sealer=sealer,
        )  # fmt: skip
    except BaseException:
        await db.aclose()
        raise


def default_transport(settings: Settings, policy: EgressPolicy) -> Transport:
    """The transport ``settings.transport`` names, imported here so the core never imports
    a driver. aiohttp is the default: the pyreqwest transport is faster but cannot tell
    when a connection is ready nor abort a cancelled request (docs/engine.md, "Transports").
    """
    if settings.transport == "reqwest":
        from sluicegate.transports.reqwest import ReqwestTransport

        return ReqwestTransport(policy=policy, max_body=settings.max_response_bytes)
    from sluicegate.transports.aiohttp import AiohttpTransport

    return AiohttpTransport(policy=policy, max_body=settings.max_response_bytes)
