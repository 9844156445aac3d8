"""Per-request client CPU and calls/s of the two transports against bare aiohttp.

Three contenders send the same POST to the loopback server of ``loopback.py`` from
CONCURRENCY tasks: ``AiohttpTransport.send``, ``ReqwestTransport.send`` and a bare
``aiohttp`` session (no egress check, no body cap, no Sending). After a warm-up of each
(connections opened, caches filled), the timed runs alternate, each round in a rotated
order, so that drift on a shared machine favours none. CPU is the whole process's
(``time.process_time``), so the Rust threads of pyreqwest are counted with Python's.

    .venv/bin/python bench/transports.py [--calls 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

import machine
from loopback import serve
from measure import runner
from sluicegate.egress import EgressPolicy
from sluicegate.settings import Settings
from sluicegate.transport import Request, Unwatched
from sluicegate.transports.aiohttp import AiohttpTransport
from sluicegate.transports.reqwest import ReqwestTransport
from throughput import CONCURRENCY, OneCall, Opener, drive_ok

BODY = b"{}"
MAX_BODY = Settings().max_response_bytes


def transport(kind: type[AiohttpTransport | ReqwestTransport]) -> Opener:
    @asynccontextmanager
    async def open_transport(base: str) -> AsyncIterator[OneCall]:
        made = kind(policy=EgressPolicy(Settings(allow_loopback=True)), max_body=MAX_BODY)
        request = Request(method="POST", url=f"{base}/ok", body=BODY)
        watch = Unwatched()

        async def one() -> bool:
            return (await made.send(request, watch)).ok

        try:
            yield one
        finally:
            await made.aclose()

    return open_transport


@asynccontextmanager
async def bare(base: str) -> AsyncIterator[OneCall]:
    async with aiohttp.ClientSession() as session:
        url = f"{base}/ok"

        async def one() -> bool:
            async with session.post(url, data=BODY) as resp:
                await resp.read()
                return 200 <= resp.status < 300

        yield one


CONTENDERS: dict[str, Opener] = {
    "AiohttpTransport": transport(AiohttpTransport),
    "ReqwestTransport": transport(ReqwestTransport),
    "bare aiohttp": bare,
}


async def measure(base: str, calls: int, repeats: int) -> dict[str, list[tuple[float, float]]]:
    names = list(CONTENDERS)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    async with (
        CONTENDERS[names[0]](base) as first,
        CONTENDERS[names[1]](base) as second,
        CONTENDERS[names[2]](base) as third,
    ):
        ones = dict(zip(names, (first, second, third), strict=True))
        for one in ones.values():
            await drive_ok(one, calls)
        for round_ in range(repeats):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                runs[name].append(await drive_ok(ones[name], calls))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    meter = machine.CpuMeter()
    with runner() as loop, serve() as base:
        runs = loop.run(measure(base, args.calls, args.repeats))
    load = meter.stop()
    cpu_us = {n: statistics.median(c / args.calls * 1e6 for _, c in r) for n, r in runs.items()}
    rate = {n: statistics.median(args.calls / w for w, _ in r) for n, r in runs.items()}
    print(f"{args.calls} POSTs per run, {args.repeats} runs each, concurrency {CONCURRENCY}")
    print(f"{'contender':<18} {'CPU µs/call':>12} {'range':>15} {'calls/s':>9} {'range':>15}")
    for name, values in runs.items():
        cpus = [c / args.calls * 1e6 for _, c in values]
        rates = [args.calls / w for w, _ in values]
        print(
            f"{name:<18} {cpu_us[name]:>12.1f} {min(cpus):>7.1f}-{max(cpus):<7.1f}"
            f" {rate[name]:>9.0f} {min(rates):>7.0f}-{max(rates):<7.0f}"
        )
    base_name = "AiohttpTransport"
    for name in ("ReqwestTransport", "bare aiohttp"):
        print(
            f"{name} / {base_name}: CPU per call x{cpu_us[name] / cpu_us[base_name]:.2f},"
            f" calls/s x{rate[name] / rate[base_name]:.2f}"
        )
    if load is not None:
        print(
            f"machine: other processes used {load.other_cpu:.1f} of {load.capacity:.1f}"
            f" CPU seconds ({load.other_cpu / load.capacity:.0%}), steal {load.steal:.1f} s"
        )


if __name__ == "__main__":
    main()
