"""Instructions per call, counted by ``valgrind --tool=callgrind``: repeatable on a busy machine.

Wall-clock and CPU-time figures move with whatever else the machine runs; the number of
instructions the interpreter executes barely does: within about 1% between runs of one
session, up to about 5% between sessions (docs/performance.md). Each path is run
twice under callgrind, with :data:`SHORT` and :data:`LONG` calls; the difference over
``LONG - SHORT`` is the cost of one call, without the interpreter's start, the imports
and the gate's opening.

Paths:

* ``mock``: the gate alone, :class:`~sluicegate.testing.MockTransport` answering 200,
  one call after another;
* ``aiohttp``: the gate with its aiohttp transport to the loopback server (a separate
  process, not counted), :data:`AIOHTTP_CONCURRENCY` calls at once;
* ``bare``: bare aiohttp (``session.post`` + ``read()``) the same way, for scale.

Both gate paths use the capping rule and the call of ``bench/throughput.py``. The parts
of the mock path (:data:`PARTS`: ``build``, ``deadline``, ``slot``, ``count``, ``door``,
``request``, ``budget``, ``id``) are counted on request, each in a loop of its own of
:data:`PART_TURNS` turns on a gate opened the same way: the work of the guardrails,
against the glue between them (docs/performance.md). Run::

    .venv/bin/python bench/callgrind.py                 # every path
    .venv/bin/python bench/callgrind.py mock aiohttp    # some of them
    .venv/bin/python bench/callgrind.py build deadline  # parts of the mock path

(``--run PATH CALLS [BASE]`` is the workload itself, which the script starts under
valgrind.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

SHORT, LONG = 500, 2_500
AIOHTTP_CONCURRENCY = 16
PATHS = ("mock", "aiohttp", "bare")
PARTS = ("build", "deadline", "slot", "count", "door", "request", "budget", "id")
#: A part costs a few thousand instructions: more turns than calls keep the noise (a few
#: hundred instructions a turn) small beside it.
PART_TURNS = (1_000, 5_000)


async def _workload(path: str, calls: int, base: str) -> None:
    from hotpath import MOCK_BASE, _answer
    from sluicegate.settings import Settings
    from sluicegate.testing import MockTransport
    from throughput import bare, drive_ok, library

    settings = Settings(allow_loopback=True)
    if path == "mock":
        opener = library(settings, "/ok", MockTransport(_answer))
        async with opener(MOCK_BASE) as one:
            await drive_ok(one, calls, 1)
    elif path == "aiohttp":
        async with library(settings, "/ok")(base) as one:
            await drive_ok(one, calls, AIOHTTP_CONCURRENCY)
    else:
        async with bare("/ok")(base) as one:
            await drive_ok(one, calls, AIOHTTP_CONCURRENCY)


async def _part(part: str, turns: int) -> None:
    """``turns`` of one part of a call of the mock path, made as the gate makes it."""
    from hotpath import MOCK_BASE, _answer
    from sluicegate.budget import Budget
    from sluicegate.call import Call, CallArgs, new_call_id
    from sluicegate.executor import _make_request, _with_key
    from sluicegate.gate import Gate
    from sluicegate.matching import Resolution
    from sluicegate.settings import Settings
    from sluicegate.storage import Grant
    from sluicegate.testing import MockTransport
    from throughput import BODY, JOURNEY, ORG, SANDBOX, deploy_cap

    settings = Settings(allow_loopback=True)
    async with Gate.open(None, settings=settings, transport=MockTransport(_answer)) as gate:
        await deploy_cap(gate, MOCK_BASE)
        args: CallArgs = {"org": ORG, "sandbox": SANDBOX, "journey": JOURNEY, "service": "action",
                          "method": "POST", "url": f"{MOCK_BASE}/ok", "body": BODY}  # fmt: skip
        call = Call.build(**args)
        result = await gate.call(call)
        clock, executor, resolution = gate._clock, gate._executor, gate._door(call, "id")
        assert isinstance(resolution, Resolution)

        def slot() -> None:
            grant = executor._capping_now(resolution)
            assert isinstance(grant, Grant)
            executor._slots.release(grant)

        if part == "deadline":  # entered inside a task, as the executor does
            for _ in range(turns):
                async with clock.deadline(clock.now() + call.timeout_seconds):
                    pass
            return
        turns_of: dict[str, Callable[[], object]] = {
            "build": lambda: Call.build(**args),
            "slot": slot,
            "count": lambda: gate.counters.record(call, result),
            "door": lambda: gate._door(call, "id"),
            "request": lambda: _make_request(
                call.method, call.url, _with_key(call.headers, "id"), call.body
            ),
            "budget": lambda: Budget.start(clock, call.timeout_seconds),
            "id": lambda: new_call_id(clock.now()),
        }
        turn = turns_of[part]
        for _ in range(turns):
            turn()


def _instructions(path: str, calls: int, base: str) -> int:
    """Instructions of one run of the workload under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            sys.executable, __file__, "--run", path, str(calls), base,
        ]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no total")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", metavar="PATH", help=f"of {', '.join(PATHS + PARTS)}")
    parser.add_argument("--run", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        from measure import runner

        path, calls, base = args.run[0], int(args.run[1]), (args.run[2:] or [""])[0]
        with runner() as loop:
            loop.run(_part(path, calls) if path in PARTS else _workload(path, calls, base))
        return 0

    paths = args.paths or list(PATHS)
    if unknown := set(paths) - set(PATHS) - set(PARTS):
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    from loopback import serve

    with serve() as base:
        for path in paths:
            short, long = PART_TURNS if path in PARTS else (SHORT, LONG)
            each = (_instructions(path, long, base) - _instructions(path, short, base)) / (
                long - short
            )
            unit = "turn" if path in PARTS else "call"
            print(f"{path:8} {each:>10,.0f} instructions per {unit}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
