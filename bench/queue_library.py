"""The queue at scale through the library: ``gate.submit`` in child processes of its own.

Each gate runs in a process of its own, so that its RSS and peak are its own and not the
benchmark's: :func:`side` starts ``python bench/queue_scale.py --child <kind> <json>``,
which runs ``CHILDREN[kind]`` there and prints its result as the last line, in JSON. One
child queues every call and stops gracefully (:func:`enqueue_in_process`); a second opens
the gate on the same directory and lets it drain (:func:`restart_in_process`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from arrivals import Recorder
from machine import Peak, rss
from queue_results import (
    JOURNEY,
    ORG,
    QUIET,
    SANDBOX,
    Enqueue,
    Memory,
    Restart,
    Side,
    drain,
    head,
    read_store,
    rule,
    warmup,
)
from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.settings import Settings

BODY = b"{}"
PRODUCERS = 1000  # concurrent gate.submit callers, in process
#: The script a child process runs: its ``--child`` option dispatches to CHILDREN.
SCRIPT = Path(__file__).resolve().with_name("queue_scale.py")


async def _depth(gate: Gate) -> int:
    return sum(queue.depth for queue in await gate.queues())


async def enqueue_in_process(data: str, base: str, calls: int) -> dict[str, Any]:
    """(In a child process.) Deploy the rule, queue ``calls`` calls through
    ``gate.submit`` from PRODUCERS tasks dropping their handles, stop gracefully."""
    scope = {"org": ORG, "sandbox": SANDBOX}
    async with Gate.open(data, settings=Settings(allow_loopback=True)) as gate, Peak() as peak:
        record = await gate.rules.create(ConfigKind.THROTTLING, payload=rule(base), **scope)
        await gate.rules.deploy(ConfigKind.THROTTLING, uid=record.uid, **scope)
        gc.collect()
        rss_open = rss()

        async def produce(numbers: Iterator[int]) -> None:
            for n in numbers:  # shared: the numbers are taken, and queued, in order
                await gate.submit(org=ORG, sandbox=SANDBOX, journey=JOURNEY, service="action",
                                  method="POST", url=f"{base}/ok/{n}", body=BODY)  # fmt: skip

        async def enqueue(numbers: range) -> None:
            shared = iter(numbers)
            await asyncio.gather(*(produce(shared) for _ in range(PRODUCERS)))

        first = warmup(calls)
        await enqueue(range(first))
        gc.collect()
        rss_before, queued_before = rss(), await _depth(gate)
        wall, cpu = time.perf_counter(), time.process_time()
        await enqueue(range(first, calls))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        gc.collect()
        rss_after, queued_after = rss(), await _depth(gate)
        stopping = time.perf_counter()
    return {
        "calls": calls - first, "seconds": wall, "cpu": cpu, "rss_open": rss_open,
        "rss_before": rss_before, "rss_after": rss_after, "peak": peak.highest,
        "queued_before": queued_before, "queued_after": queued_after,
        "stop_seconds": time.perf_counter() - stopping,
    }  # fmt: skip


async def restart_in_process(data: str, seconds: float) -> dict[str, Any]:
    """(In a child process.) Open the gate on ``data`` and let it drain for ``seconds``."""
    main_at = time.time()
    opening = time.perf_counter()
    async with Gate.open(data, settings=Settings(allow_loopback=True)):
        open_seconds = time.perf_counter() - opening
        opened_at = time.time()
        resident = rss()
        await asyncio.sleep(seconds)
    return {"main_at": main_at, "opened_at": opened_at, "open_seconds": open_seconds,
            "rss": resident}  # fmt: skip


CHILDREN: dict[str, Callable[..., Coroutine[Any, Any, dict[str, Any]]]] = {
    "enqueue": enqueue_in_process,
    "restart": restart_in_process,
}


async def _child(kind: str, **args: Any) -> dict[str, Any]:
    """Run ``CHILDREN[kind](**args)`` in a new process; its result. Kills it if cancelled."""
    command = [sys.executable, str(SCRIPT), "--child", kind, json.dumps(args)]
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"the {kind} process failed (exit {process.returncode})")
    found: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return found


async def side(system: Recorder, calls: int, seconds: float) -> Side:
    """Queue ``calls`` calls to ``system`` in one child process, stop it, restart on the
    same directory in another and judge ``seconds`` of the drain."""
    with tempfile.TemporaryDirectory(prefix="sluicegate-bench-") as tmp:
        before = len(await system.arrivals())
        done = await _child("enqueue", data=tmp, base=system.base, calls=calls)
        stopped = time.time()
        stored = read_store(Path(tmp), head=head(seconds))
        await asyncio.sleep(max(0.0, stopped + QUIET - time.time()))
        earlier = (await system.arrivals())[before:]
        started = time.time()
        # open long enough for `seconds` of arrivals after the first (within a second)
        back = await _child("restart", data=tmp, seconds=seconds + 1.0)
        later = (await system.arrivals())[before + len(earlier) :]
    first_at = min((at for at, _ in later), default=float("nan"))
    return Side(
        name="gate.submit, in process",
        calls=calls,
        concurrency=PRODUCERS,
        enqueue=Enqueue(calls=done["calls"], seconds=done["seconds"], cpu_seconds=done["cpu"]),
        memory=Memory(
            rss_open=done["rss_open"],
            rss_before=done["rss_before"],
            rss_after=done["rss_after"],
            peak=done["peak"],
            queued_before=done["queued_before"],
            queued_after=done["queued_after"],
            stored=stored.calls,
            disk=stored.disk,
        ),
        restart=Restart(
            stop_seconds=done["stop_seconds"],
            queued=stored.calls,
            ready_seconds=back["opened_at"] - started,
            start_seconds=back["main_at"] - started,
            open_seconds=back["open_seconds"],
            first_seconds=first_at - started,
            rss=back["rss"],
        ),
        drain=drain(earlier, later, stored.rank, seconds),
    )
