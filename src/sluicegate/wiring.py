"""The one place where backends and the default transport are chosen."""

from __future__ import annotations

from pathlib import Path

from sluicegate.backends.memory import MemoryBackend
from sluicegate.egress import EgressPolicy
from sluicegate.settings import Settings
from sluicegate.storage import Backend
from sluicegate.transport import Transport


async def open_backend(data_dir: str | Path | None) -> Backend:
    """SQLite in ``data_dir`` (queues, slots and configs durable), or memory when None."""
    if data_dir is None:
        return MemoryBackend()
    from sluicegate.backends.sqlite import SqliteBackend

    return await SqliteBackend.open(Path(data_dir))


def default_transport(settings: Settings, policy: EgressPolicy) -> Transport:
    """The aiohttp transport, imported here so the core never imports a driver."""
    from sluicegate.transports.aiohttp import AiohttpTransport

    return AiohttpTransport(policy=policy, max_body=settings.max_response_bytes)
