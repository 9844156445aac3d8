"""A million calls queued behind a throttling rule on the SQLite backend, and back out.

Throttled calls used to wait as in-memory tasks (:data:`queue_results.IN_MEMORY_BYTES`
each). Now a waiting call is a row of ``queued_calls`` in ``<data_dir>/sluicegate.db``
and holds nothing in memory once its caller has dropped its handle; one dispatcher per
queue claims the head when a slot frees. This measures what that design promises, at scale,
with the real clock and the real network:

1. **Enqueue** (in process, ``gate.submit``, handles dropped; and over HTTP,
   ``POST /v1/calls`` of ``sluicegate serve``): calls per second; resident memory (RSS,
   ``/proc/<pid>/statm``) before and after, so the growth per queued call; the peak RSS
   (:class:`machine.Peak`); the data directory's bytes per stored call (the stored row).
2. **Restart** with every call still queued: a graceful stop, then a fresh process on
   the same directory: the time from its start until the gate is open (the service:
   until it answers) and until the first queued call reaches the external system, and
   the ``Gate.open`` call alone.
3. **Drain** after the restart: the calls per second that reach the external system,
   the most in any 1000 ms window wherever it starts (never more than the rule's
   ``maxThroughput``), and whether they arrive in the order they were queued.

The external system (:mod:`arrivals`) runs in its own process and stamps each request
with the kernel's receive time. Each gate runs in a process of its own, so that its RSS
and peak are its own and not the benchmark's: the library's in children of this script
(:mod:`queue_library`, through ``--child``), the service as ``sluicegate serve``
(:mod:`queue_service`). Both yield the figures of :mod:`queue_results`, which also judges
the drain; :mod:`queue_report` shows them. Run ``python bench/queue_scale.py`` for this
part alone (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import queue_library
import queue_service
from arrivals import recorder
from machine import CpuMeter
from measure import interruptible, runner
from queue_results import Scale

#: The sizes of a full run and of a smoke run: calls through the library, calls through
#: the service, seconds of arrivals judged after each restart (bench/run.py uses them too).
FULL = (1_000_000, 100_000, 10.0)
QUICK = (2_000, 300, 2.0)


async def measure(calls: int, http_calls: int, drain_seconds: float) -> Scale:
    """``calls`` through the library, then ``http_calls`` through the service, each queued,
    restarted and drained for ``drain_seconds`` against one external system."""
    meter = CpuMeter()
    started = time.perf_counter()
    async with recorder() as system:
        library = await queue_library.side(system, calls, drain_seconds)
        service = await queue_service.side(system, http_calls, drain_seconds)
    return Scale(library=library, service=service, seconds=time.perf_counter() - started,
                 interference=meter.stop())  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    interruptible()
    if args.child:
        kind, kwargs = args.child
        with runner() as loop:
            child = queue_library.CHILDREN[kind]
            print(json.dumps(loop.run(child(**json.loads(kwargs)))), flush=True)
        return 0
    import queue_report  # here, not above: the children need no report

    with runner() as loop:
        scale = loop.run(measure(*(QUICK if args.quick else FULL)))
    print(queue_report.scale_text(scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
