"""The external system of the queue benchmark: when each numbered call arrived.

It is the tests' external system (``tests/arrivals.py``), run as a process of its own: it
answers ``POST /ok/<n>`` with 200 and records the kernel's receive time of each request
(``SO_TIMESTAMPNS``, CLOCK_REALTIME, comparable with ``time.time()`` in other processes),
not the time it got round to reading its sockets: whether a rate held is judged by when
requests reached the external system. One instrument serves the tests and the benchmark.

:func:`recorder` starts the process, yields a :class:`Recorder` and stops it at the end.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp

SERVER = Path(__file__).resolve().parent.parent / "tests" / "arrivals.py"
START_TIMEOUT = 10.0
#: The path a numbered call is sent to: ``/ok/<n>``.
PREFIX = "/ok/"


@dataclass(frozen=True, slots=True)
class Recorder:
    """A running external system: its base URL, and its record of arrivals."""

    base: str
    session: aiohttp.ClientSession

    def url(self, n: int) -> str:
        """Where call number ``n`` is sent."""
        return f"{self.base}{PREFIX}{n}"

    async def arrivals(self, since: int = 0) -> list[tuple[float, int]]:
        """``(kernel receive time, call number)`` of every call from the ``since``-th on."""
        async with self.session.get(f"{self.base}/__arrivals?since={since}") as response:
            response.raise_for_status()
            return [
                (at, int(path.removeprefix(PREFIX)))
                for at, _, path in await response.json()
                if path.startswith(PREFIX)
            ]


@asynccontextmanager
async def recorder() -> AsyncIterator[Recorder]:
    """Run the external system for the block; stop it (and wait) at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVER), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)).split()
        if line[:1] != [b"PORT"]:
            raise RuntimeError(f"the external system did not start (said {line!r})")
        async with aiohttp.ClientSession() as session:
            yield Recorder(f"http://127.0.0.1:{int(line[1])}", session)
    finally:
        with suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), START_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
