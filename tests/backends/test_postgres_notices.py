"""Changes announced through PostgreSQL reach every other process, even one whose reload
failed: it is tried again, not dropped."""

from __future__ import annotations

import asyncio

from tests.loopback import eventually, until
from tests.services import postgres_schema

from sluicegate.backends.postgres import PostgresDatabase
from sluicegate.errors import StorageError


async def test_a_notice_reaches_the_others_and_a_failed_reload_is_tried_again() -> None:
    """B listens; A notifies. B's first reload fails: it is called again once B listens
    again, and A's next notice reaches B as well."""
    async with postgres_schema() as url:
        a = PostgresDatabase(url, component="notices", migrations=())
        b = PostgresDatabase(url, component="notices", migrations=())
        reloads: list[int] = []

        def changed() -> None:
            reloads.append(len(reloads))
            if len(reloads) == 1:
                raise StorageError("the database went away during the reload")

        listening = asyncio.create_task(b.listen("configs", changed))
        try:

            async def heard() -> bool:
                await a.notify("configs")  # until B listens, a notice reaches nobody
                return bool(reloads)

            await eventually(heard, seconds=10)
            await until(lambda: len(reloads) >= 2, seconds=5)  # called again after relisten
            before = len(reloads)
            await a.notify("configs")
            await until(lambda: len(reloads) > before, seconds=5)
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            await a.aclose()
            await b.aclose()
