"""Instructions per call, counted by ``valgrind --tool=callgrind``: repeatable on a busy machine.

Wall-clock and CPU-time figures move with whatever else the machine runs; the number of
instructions the interpreter executes does not (to within about 0.5%). Each path is run
twice under callgrind, with :data:`SHORT` and :data:`LONG` calls; the difference over
``LONG - SHORT`` is the cost of one call, without the interpreter's start, the imports
and the gate's opening.

Paths:

* ``mock``: the gate alone, :class:`~sluicegate.testing.MockTransport` answering 200,
  one call after another;
* ``aiohttp``: the gate with its aiohttp transport to the loopback server (a separate
  process, not counted), :data:`AIOHTTP_CONCURRENCY` calls at once;
* ``bare``: bare aiohttp (``session.post`` + ``read()``) the same way, for scale.

Both gate paths use the capping rule and the call of ``bench/throughput.py``. Run::

    .venv/bin/python bench/callgrind.py                 # every path
    .venv/bin/python bench/callgrind.py mock aiohttp    # some of them

(``--run PATH CALLS [BASE]`` is the workload itself, which the script starts under
valgrind.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

SHORT, LONG = 500, 2_500
AIOHTTP_CONCURRENCY = 16
PATHS = ("mock", "aiohttp", "bare")


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
    parser.add_argument("paths", nargs="*", metavar="PATH", help=f"of {', '.join(PATHS)}")
    parser.add_argument("--run", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        from measure import runner

        path, calls, base = args.run[0], int(args.run[1]), (args.run[2:] or [""])[0]
        with runner() as loop:
            loop.run(_workload(path, calls, base))
        return 0

    paths = args.paths or list(PATHS)
    if unknown := set(paths) - set(PATHS):
        parser.error(f"unknown paths: {', '.join(sorted(unknown))}")
    from loopback import serve

    with serve() as base:
        for path in paths:
            short = _instructions(path, SHORT, base)
            long = _instructions(path, LONG, base)
            per_call = (long - short) / (LONG - SHORT)
            print(f"{path:8} {per_call:>10,.0f} instructions per call", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
