"""What the garbage collector costs on the two busy paths, under a chosen GC setting.

Paths:

* ``enqueue``: ``gate.submit`` of N calls onto the SQLite backend behind a throttling
  rule (as ``bench/queue_library.py``: 1000 producers, handles dropped, a URL per call);
* ``calls``: ``gate.call`` through the aiohttp transport to the loopback server at
  concurrency 64 (as ``bench/throughput.py``); ``flaky`` the same with 30% of the attempts
  failing and retried at once (what cycles do failures leave?).

``GC_KEEP=1`` makes the enqueue's producers keep every handle (as a caller that waits for
the results later does); ``GC_MEMORY=1`` runs it on the memory backend.

Settings: ``default`` (CPython's, 700/10/10), ``freeze`` (``gc.freeze()`` once the gate is
open), ``threshold=A,B,C`` (``gc.set_threshold(A, B, C)``), ``tuned`` (what
:func:`sluicegate.collector.tune` sets), or several joined with ``+``. Each run reports
wall and CPU seconds, and per generation the collections and the seconds they took
(``gc.callbacks``), and the objects the collector tracks at the end. Run::

    .venv/bin/python bench/gc_costs.py enqueue 200000 default freeze tuned
    .venv/bin/python bench/gc_costs.py calls 20000 default tuned

Each setting runs in a fresh process of its own (``--child``), so none inherits another's heap.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PRODUCERS = 1000


class GcMeter:
    """Collections and their seconds per generation, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]
        self._started = 0.0

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.counts[generation] += 1
        self.seconds[generation] += time.perf_counter() - self._started
        self.collected[generation] += info["collected"]


def _apply(setting: str) -> None:
    """Settings applied before the gate opens (thresholds); the others wait for it."""
    for part in setting.split("+"):
        if part.startswith("threshold="):
            gc.set_threshold(*(int(n) for n in part.removeprefix("threshold=").split(",")))
        elif part not in ("default", "freeze", "tuned"):
            raise SystemExit(f"unknown setting {part!r}")


def _opened(setting: str) -> None:
    """Settings applied once the gate is open: ``freeze``, and ``tuned`` (which freezes)."""
    parts = setting.split("+")
    if "tuned" in parts:
        from sluicegate.collector import tune

        tune()
    elif "freeze" in parts:
        gc.collect()
        gc.freeze()


async def _enqueue(calls: int, base: str, setting: str) -> dict[str, Any]:
    from queue_results import JOURNEY, ORG, SANDBOX, rule
    from sluicegate.configs import ConfigKind
    from sluicegate.gate import Gate
    from sluicegate.settings import Settings

    scope = {"org": ORG, "sandbox": SANDBOX}
    with tempfile.TemporaryDirectory(prefix="sluicegate-gc-") as tmp:
        data = None if os.environ.get("GC_MEMORY") else tmp
        async with Gate.open(data, settings=Settings(allow_loopback=True)) as gate:
            record = await gate.rules.create(ConfigKind.THROTTLING, payload=rule(base), **scope)
            await gate.rules.deploy(ConfigKind.THROTTLING, uid=record.uid, **scope)
            _opened(setting)

            kept: list[Any] = []
            keep = kept.append if os.environ.get("GC_KEEP") else (lambda handle: None)

            async def produce(numbers: Any) -> None:
                for n in numbers:
                    keep(await gate.submit(org=ORG, sandbox=SANDBOX, journey=JOURNEY,
                                      service="action", method="POST", url=f"{base}/ok/{n}",
                                      body=b"{}"))  # fmt: skip

            shared = iter(range(calls))
            with GcMeter() as meter:
                wall, cpu = time.perf_counter(), time.process_time()
                await asyncio.gather(*(produce(shared) for _ in range(PRODUCERS)))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            tracked = len(gc.get_objects())
    return _figures(calls, wall, cpu, meter, tracked)


async def _calls(calls: int, base: str, setting: str, path: str = "/ok") -> dict[str, Any]:
    from sluicegate.settings import Settings
    from throughput import drive, library

    settings = Settings(allow_loopback=True, retry_schedule=(0.0, 0.0, 0.0))
    async with library(settings, path)(base) as one:
        await drive(one, calls // 4)
        _opened(setting)
        with GcMeter() as meter:
            wall, cpu, failed = await drive(one, calls)
        if failed and path == "/ok":
            raise RuntimeError(f"{failed} calls failed")
        tracked = len(gc.get_objects())
    return _figures(calls, wall, cpu, meter, tracked)


def _figures(calls: int, wall: float, cpu: float, meter: GcMeter, tracked: int) -> dict[str, Any]:
    return {
        "calls": calls, "wall": wall, "cpu": cpu, "per_s": calls / wall,
        "cpu_us": cpu / calls * 1e6, "collections": meter.counts,
        "gc_seconds": [round(s, 3) for s in meter.seconds], "collected": meter.collected,
        "tracked": tracked, "frozen": gc.get_freeze_count(),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", choices=("enqueue", "calls", "flaky"))
    parser.add_argument("calls", type=int)
    parser.add_argument("settings", nargs="+")
    parser.add_argument("--child", metavar="BASE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from measure import runner

        setting = args.settings[0]
        _apply(setting)
        with runner() as loop:
            if args.path == "enqueue":
                work = _enqueue(args.calls, args.child, setting)
            else:
                path = "/ok" if args.path == "calls" else "/flaky"
                work = _calls(args.calls, args.child, setting, path)
            print(json.dumps(loop.run(work)), flush=True)
        return 0

    from loopback import serve

    with serve() as base:
        for setting in args.settings:
            command = [sys.executable, str(Path(__file__).resolve()), args.path,
                       str(args.calls), setting, "--child", base]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            print(f"{setting:28} {out.splitlines()[-1]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
