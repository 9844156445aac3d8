"""The ``backend`` fixture: every contract test runs once per storage backend.

To add a backend, add one opener to :data:`BACKENDS`; every contract suite in this
directory then runs on it too. ``shared`` is Redis (slots, queues) with PostgreSQL
(configs), on the machine's services, with the time of the test's script rather than
Redis's own (the time is a parameter of the contract).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from tests.services import shared

from sluicegate.backends.memory import MemoryBackend
from sluicegate.backends.sqlite import SqliteBackend
from sluicegate.call import Call, Service
from sluicegate.storage import Backend, QueuedCall
from sluicegate.wiring import open_backend


@asynccontextmanager
async def _memory(_: Path) -> AsyncIterator[Backend]:
    yield MemoryBackend()


@asynccontextmanager
async def _sqlite(tmp_path: Path) -> AsyncIterator[Backend]:
    yield await SqliteBackend.open(tmp_path / "data")


@asynccontextmanager
async def _shared(_: Path) -> AsyncIterator[Backend]:
    async with shared() as where:
        yield await open_backend(replace(where, server_time=False))


#: A data key of the tests (:mod:`sluicegate.sealing`): stores that seal queued calls.
DATA_KEY = bytes(range(32))


@asynccontextmanager
async def _sqlite_sealed(tmp_path: Path) -> AsyncIterator[Backend]:
    yield await open_backend(tmp_path / "data", (DATA_KEY,))


@asynccontextmanager
async def _shared_sealed(_: Path) -> AsyncIterator[Backend]:
    async with shared() as where:
        yield await open_backend(replace(where, server_time=False), (DATA_KEY,))


#: Name -> opener given a fresh temporary directory. The parametrization follows this list.
BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[Backend]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "shared": _shared,
    "sqlite-sealed": _sqlite_sealed,
    "shared-sealed": _shared_sealed,
}


@pytest.fixture(params=list(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A freshly opened (and recovered) backend of each kind, closed after the test."""
    async with BACKENDS[request.param](tmp_path) as opened:
        try:
            await opened.recover(0)
            yield opened
        finally:
            await opened.aclose()


def make_queued(n: int, *, queue: str = "q", body: bytes = b"{}") -> QueuedCall:
    """The ``n``-th queued call of a test: call id ``call-<n>``, distinct URL and enqueue time."""
    call = Call(
        org="org-1",
        sandbox="prod",
        journey="journey-1",
        service=Service.ACTION,
        method="POST",
        url=f"https://api.example.com/orders/{n}",
        headers={"content-type": "application/json"},
        body=body,
        timeout_seconds=30.0,
    )
    return QueuedCall(call_id=f"call-{n}", queue=queue, call=call, enqueued_at=1.7e9 + n, rate=200)


@pytest.fixture
def queued() -> Callable[..., QueuedCall]:
    """The :func:`make_queued` factory, as a fixture so test modules need not import conftest."""
    return make_queued
