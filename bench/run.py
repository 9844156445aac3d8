"""sluicegate's benchmarks: what the guardrails cost, against what a user would pick instead.

Measured in one run, each as a ratio against the alternative:

1. limiter decisions per second in process: sluicegate's exact sliding window (bare, and
   behind the memory slot store) against aiolimiter, which is not exact;
2. calls per second at concurrency 64 through the gate against bare aiohttp, both to the
   same loopback server in a separate process, and the client CPU the gate adds per call;
3. the same with 30% of attempts failing, against aiohttp + tenacity + asyncio.timeout
   retrying the same way (no waits on either side);
4. a million calls queued behind a throttling rule on the SQLite backend, through
   ``gate.submit`` and through ``POST /v1/calls`` of the service: enqueue rate, resident
   memory per queued call, restart time with them all queued, and the drain after it;
5. the service against calling the system directly (:mod:`service`): calls relayed one
   per request and in batches, the latency it adds, calls queued through it.

Section 2 runs again with the opt-in reqwest transport.

Why: the gate sits on the path of every call a journey makes; these numbers say what
that costs and whether it stays within the targets. ``make bench`` runs
``bench/run.py --write docs/benchmarks.md``; ``--quick`` is a smoke run of seconds for CI
and ``--profile`` prints where a call's time goes instead of benchmarking.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import decisions
import hotpath
import machine
import queue_scale
import service
import throughput
from loopback import serve
from measure import interruptible, runner
from report import Plan, Results, markdown, text
from sluicegate.settings import Settings

FULL = Plan(
    name="full", decisions=500_000, calls=12_000, flaky_calls=9_000, repeats=7,
    queued_calls=queue_scale.FULL[0], queued_http_calls=queue_scale.FULL[1],
    drain_seconds=queue_scale.FULL[2],
)  # fmt: skip
QUICK = Plan(
    name="quick", decisions=20_000, calls=500, flaky_calls=500, repeats=3,
    queued_calls=queue_scale.QUICK[0], queued_http_calls=queue_scale.QUICK[1],
    drain_seconds=queue_scale.QUICK[2],
)  # fmt: skip
PROFILED_CALLS = 20_000
ZERO_WAITS = (0.0, 0.0, 0.0)


def _step(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


def benchmark(plan: Plan) -> Results:
    """Every measurement of ``plan``, on one event loop, against one server process."""
    started = time.perf_counter()
    meter = machine.CpuMeter()
    loopback = Settings(allow_loopback=True)
    flaky = Settings(allow_loopback=True, retry_schedule=ZERO_WAITS)
    on_reqwest = Settings(allow_loopback=True, transport="reqwest")
    with runner() as loop:
        _step("limiter decisions")
        limiters = decisions.measure(loop, plan.decisions, plan.repeats)
        _step("sluicegate alone, mock transport")
        core_us = loop.run(hotpath.core_cpu(plan.calls, plan.repeats))
        with serve() as base:
            _step("calls/s: sluicegate vs bare aiohttp")
            plain = loop.run(
                throughput.compare(
                    throughput.Spec("sluicegate", throughput.library(loopback, "/ok")),
                    throughput.Spec("bare aiohttp", throughput.bare("/ok")),
                    base,
                    calls=plan.calls,
                    repeats=plan.repeats,
                )
            )
            _step("calls/s: sluicegate on reqwest vs bare aiohttp")
            reqwest = loop.run(
                throughput.compare(
                    throughput.Spec("sluicegate, reqwest", throughput.library(on_reqwest, "/ok")),
                    throughput.Spec("bare aiohttp", throughput.bare("/ok")),
                    base,
                    calls=plan.calls,
                    repeats=plan.repeats,
                )
            )
            _step("calls/s with 30% failing: sluicegate vs aiohttp + tenacity")
            failing = loop.run(
                throughput.compare(
                    throughput.Spec("sluicegate", throughput.library(flaky, "/flaky")),
                    throughput.Spec("aiohttp + tenacity", throughput.with_tenacity("/flaky")),
                    base,
                    calls=plan.flaky_calls,
                    repeats=plan.repeats,
                )
            )
            _step("the service: relayed, batches, queued")
            served = loop.run(service.measure(base, calls=plan.calls, repeats=plan.repeats))
        _step(
            f"{plan.queued_calls:,} calls queued (gate.submit), then "
            f"{plan.queued_http_calls:,} (POST /v1/calls): enqueue, restart, drain"
        )
        queue = loop.run(
            queue_scale.measure(plan.queued_calls, plan.queued_http_calls, plan.drain_seconds)
        )
    return Results(
        plan=plan,
        limiters=limiters,
        plain=plain,
        core_us=core_us,
        flaky=failing,
        reqwest=reqwest,
        queue=queue,
        service=served,
        seconds=time.perf_counter() - started,
        interference=meter.stop(),  # after the server process was waited for
    )


def profile() -> str:
    with runner() as loop, serve() as base:
        return loop.run(hotpath.profile(base, PROFILED_CALLS))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="PATH", type=Path, help="write the Markdown report")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument(
        "--profile", action="store_true", help="profile the per-call hot path instead"
    )
    args = parser.parse_args()
    interruptible()
    if args.profile:
        print(profile())
        return 0
    results = benchmark(QUICK if args.quick else FULL)
    print(text(results))
    if args.write is not None:
        command = shlex.join([".venv/bin/python", "bench/run.py", *sys.argv[1:]])
        args.write.write_text(markdown(results, machine.facts(), command))
        print(f"\nwritten to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
