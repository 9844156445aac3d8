"""The engine's own cost per call, without the network, and where a real call's time goes.

:func:`core_cpu` makes calls through a gate whose transport answers 200 at once
(:class:`MockTransport`), with the same capping rule and concurrency as the HTTP
benchmark: what is left is the CPU sluicegate itself spends per call (validation, the
egress check, rule resolution, the capping window, the budget's deadline, the executor,
the result and the counters).

:func:`profile` runs the library against the loopback server under cProfile and prints
the most expensive functions of sluicegate and of the standard library code it calls on
the hot path (URL parsing, uuid, asyncio timeouts). cProfile inflates small functions,
so read its figures as shares, not as microseconds. For figures that hold on a busy
machine, count instructions instead: ``bench/callgrind.py`` (valgrind) runs this mock
path and the loopback one.
"""

from __future__ import annotations

import cProfile
import io
import pstats

from loopback import OK_BODY
from measure import Series
from sluicegate.settings import Settings
from sluicegate.testing import MockTransport
from sluicegate.transport import Request, Response
from throughput import drive, library

#: An address the mock transport never connects to; only the URL's shape matters.
MOCK_BASE = "http://127.0.0.1:9"
HOT_PATH_FILES = r"sluicegate|urllib/parse|uuid|asyncio/timeouts"
_ANSWER = Response(status=200, headers={"Content-Type": "application/json"}, body=OK_BODY)


def _answer(request: Request) -> Response:
    return _ANSWER


async def core_cpu(calls: int, repeats: int) -> Series:
    """Client CPU microseconds per call with no network: a warm-up, then ``repeats`` runs."""
    opener = library(Settings(allow_loopback=True), "/ok", MockTransport(_answer))
    values = []
    async with opener(MOCK_BASE) as one:
        await drive(one, calls)
        for _ in range(repeats):
            _, cpu, failed = await drive(one, calls)
            if failed:
                raise RuntimeError(f"{failed} calls failed against the mock transport")
            values.append(cpu / calls * 1e6)
    return Series(tuple(values))


async def profile(base: str, calls: int, top: int = 30) -> str:
    """The hot path of ``calls`` library calls to ``base``, by own time, as text."""
    profiler = cProfile.Profile()
    async with library(Settings(allow_loopback=True), "/ok")(base) as one:
        await drive(one, calls // 4)  # warm-up: connections and caches
        profiler.enable()
        await drive(one, calls)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(HOT_PATH_FILES, top)
    return out.getvalue()
