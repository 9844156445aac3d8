"""Rate limiters shared through one Redis: decisions per second, and how exact they are.

4 spawned worker processes of 64 asyncio tasks (on uvloop) ask one limiter for a decision in
a loop, a refused task at once again; all share one Redis and one limit of 1000 per 1000 ms.
The contenders' runs alternate (A B C D, A B C D …), each on a fresh key; each contender is
connected once per process and warmed up first. Measured:

1. decisions per second while the tasks ask, in total and per process (*Redis CPU* beside
   it: Redis's CPU seconds per second of the run; 1.00 is one busy core);
2. accuracy at the point of use: a grant is timed with ``time.time()`` when it returns to
   its caller; the grants of all processes are merged and
   ``sluicegate.testing.most_in_window(times, 1.0)`` gives the most in any 1000 ms wherever
   it starts: its *excess* over the limit is what the system behind the limiter sees.
   *Utilisation* is grants ÷ (limit x the shape's length in seconds).

Shapes: *constant* (all ask all the time, nearly every decision a refusal: the raw decision
rate), *pulsed* (300 ms of asking every second) and *after idle* (a warm-up, 2.5 s idle,
then a burst: the first window after idle is where a token bucket, full again, lets too
much through). An exact window reaches about 100% utilisation in the first two and 60%
after idle (a window's worth in the warm-up, two in the burst, in 5 s).

- sluicegate: ``RedisBackend.open(url, configs=MemoryConfigStore(), prefix=…)``, ``await
  backend.slots.acquire([Limit(key, 1000, 1000)], now_ms)`` (its clock is Redis ``TIME``),
  for a grant ``backend.slots.sent(grant, now_ms)`` (written in the background);
- limits: ``await MovingWindowRateLimiter(RedisStorage("async+redis://…")).hit(
  RateLimitItemPerSecond(1000), key)`` (on coredis);
- pyrate-limiter: ``Limiter(await RedisBucket.init([Rate(1000, Duration.SECOND)], client,
  key))`` on a ``redis.asyncio`` client, ``await try_acquire_async("bench", blocking=False)``,
  which holds an ``asyncio.Lock`` around each decision: one in flight per process;
- throttled-py: ``await Throttled(using="token_bucket" | "sliding_window",
  quota=per_sec(1000), store=RedisStore(url), timeout=-1).limit(key)`` (``throttled.asyncio``).

Why: sluicegate's instances share their limits through Redis; this says whether that window
stays exact under contention, and what a decision costs against what a user would pick
instead. 4 busy processes and Redis share the machine's CPUs, so decisions/s is bound by CPU
and moved by other work on the machine: the load average is reported with the numbers.
``.venv/bin/python bench/redis_limiters.py --write docs/benchmarks-redis.md``; ``--quick`` is
a smoke run of under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import multiprocessing
import os
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import redis
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from pyrate_limiter import Duration, Limiter, Rate, RedisBucket
from redis.asyncio import Redis as AsyncRedis
from throttled.asyncio import RedisStore, Throttled, per_sec

from measure import interruptible, runner
from sluicegate.backends.memory import MemoryConfigStore
from sluicegate.backends.redis import RedisBackend
from sluicegate.storage import Grant, Limit
from sluicegate.testing import most_in_window
from tables import Table, count, ratio

URL = "redis://127.0.0.1:6379/0"
LIMIT = 1000  # per PERIOD
PERIOD = 1.0
PROCESSES = 4
CALLERS = 64  # asyncio tasks per process
SETUP = 0.6  # seconds between sending a run to the workers and its start
IDLE = 2.5  # seconds without a request in the shape "after idle"
CONTENDERS = ("sluicegate", "limits moving window", "pyrate-limiter",
              "throttled token bucket", "throttled sliding window")  # fmt: skip
BASELINE = "limits moving window"
VERSIONS = ("sluicegate", "limits", "coredis", "pyrate-limiter", "throttled-py", "redis")
Ask = Callable[[], Awaitable[bool]]  # one decision: granted?
Opened = Callable[[str], Awaitable[Ask]]  # a limiter, connected: a key -> its decision
Run = tuple[list["Outcome"], float]  # each process's part, and Redis CPU s per wall s


def shapes(seconds: float) -> dict[str, tuple[float, list[tuple[float, float]]]]:
    """Shape -> its length and the spans (from its start, in seconds) when callers ask."""
    warm, cycles = 0.2 * seconds, max(1, int(seconds))
    return {
        "constant": (seconds, [(0.0, seconds)]),
        "pulsed": (cycles, [(k, k + 0.3) for k in range(cycles)]),
        "after idle": (0.5 * seconds + IDLE, [(0.0, warm), (warm + IDLE, 0.5 * seconds + IDLE)]),
    }


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    prefix: str  # of this benchmark's keys
    key: str  # unique to this run: a fresh window
    phases: list[tuple[float, float]]  # absolute time.time() spans


@dataclass(slots=True)
class Outcome:
    """One process's part of one run."""

    decisions: int = 0
    grants: list[float] = field(default_factory=list)
    errors: int = 0
    error: str = ""  # the first one

    def failed(self, exc: Exception) -> None:
        self.errors += 1
        self.error = self.error or f"{type(exc).__name__}: {exc}"


async def open_limiter(name: str, prefix: str, stack: AsyncExitStack) -> Opened:
    """``name``, connected once per process as an application would, its keys under
    ``prefix``: what it returns gives the decision on a limit of LIMIT per second of a key."""
    if name == "sluicegate":
        backend = await RedisBackend.open(URL, configs=MemoryConfigStore(), prefix=prefix)
        stack.push_async_callback(backend.aclose)
        acquire, sent = backend.slots.acquire, backend.slots.sent

        async def sluicegate(key: str) -> Ask:
            limits = [Limit(key=key, count=LIMIT, period_ms=int(PERIOD * 1000))]

            async def ask() -> bool:
                found = await acquire(limits, int(time.time() * 1000))
                if isinstance(found, Grant):
                    sent(found, int(time.time() * 1000))  # sent now (and timed by the caller)
                    return True
                return False

            return ask

        return sluicegate
    if name == "limits moving window":
        moving = MovingWindowRateLimiter(RedisStorage(f"async+{URL}", key_prefix=prefix))

        async def limits(key: str) -> Ask:
            return functools.partial(moving.hit, RateLimitItemPerSecond(LIMIT), key)

        return limits
    if name == "pyrate-limiter":
        client = AsyncRedis.from_url(URL)
        stack.push_async_callback(client.aclose)

        async def pyrate(key: str) -> Ask:
            rates, bucket_key = [Rate(LIMIT, Duration.SECOND)], f"{prefix}-{key}"
            bucket = await RedisBucket.init(rates, client, bucket_key)
            limiter = stack.enter_context(Limiter(bucket))  # closed at the end
            return functools.partial(limiter.try_acquire_async, "bench", blocking=False)

        return pyrate
    kind = "token_bucket" if "token" in name else "sliding_window"  # throttled-py
    throttle = Throttled(using=kind, quota=per_sec(LIMIT), store=RedisStore(URL), timeout=-1,
                         key_prefix=prefix)  # fmt: skip

    async def throttled(key: str) -> Ask:
        async def ask() -> bool:
            return not (await throttle.limit(key)).limited

        return ask

    return throttled


async def run(job: Job, opened: dict[str, Opened], stack: AsyncExitStack) -> Outcome:
    """The callers of one process, asking during ``job.phases``."""
    outcome = Outcome()
    try:
        if job.name not in opened:
            opened[job.name] = await open_limiter(job.name, job.prefix, stack)
        ask = await opened[job.name](job.key)

        async def caller() -> None:
            for begin, end in job.phases:
                await asyncio.sleep(max(0.0, begin - time.time()))
                while time.time() < end:
                    try:
                        if await ask():
                            outcome.grants.append(time.time())
                        outcome.decisions += 1
                    except Exception as exc:  # counted and shown, not a decision
                        outcome.failed(exc)
                        await asyncio.sleep(0.01)

        await asyncio.gather(*(caller() for _ in range(CALLERS)))
    except Exception as exc:  # the contender could not be set up
        outcome.failed(exc)
    return outcome


def worker(conn: multiprocessing.connection.Connection) -> None:
    # This Redis keeps no files, which is known: no warning each time a backend opens.
    logging.getLogger("sluicegate.backends.redis").addFilter(lambda r: "append-only" not in r.msg)
    opened: dict[str, Opened] = {}
    with runner() as loop:
        stack = AsyncExitStack()
        conn.send(None)  # ready: imports done
        while (job := conn.recv()) is not None:
            conn.send(loop.run(run(job, opened, stack)))
        loop.run(stack.aclose())


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")  # Redis's CPU seconds so far
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def dispatch(
    pipes: list, client: redis.Redis, prefix: str, name: str, key: str, spans: list
) -> Run:
    """One run of ``name`` in every worker; the callers ask during ``spans`` from its start."""
    start = time.time() + SETUP
    job, cpu = Job(name, prefix, key, [(start + a, start + b) for a, b in spans]), redis_cpu(client)
    for pipe in pipes:
        pipe.send(job)
    return [pipe.recv() for pipe in pipes], (redis_cpu(client) - cpu) / (time.time() - start)


def measure(seconds: float, rounds: int, prefix: str) -> tuple[dict, list[str]]:
    """Every shape, ``rounds`` alternating rounds of every contender each."""
    context = multiprocessing.get_context("spawn")
    pipes, ends = zip(*(context.Pipe() for _ in range(PROCESSES)), strict=True)
    workers = [context.Process(target=worker, args=(end,), daemon=True) for end in ends]
    for process in workers:
        process.start()
    client = redis.Redis.from_url(URL)
    results: dict[str, dict[str, list[Run]]] = {}
    loads = [f"before: {loadavg()}"]
    try:
        [pipe.recv() for pipe in pipes]  # every worker ready
        for index, name in enumerate(CONTENDERS):  # a warm-up: scripts loaded, connections
            dispatch(pipes, client, prefix, name, f"warm-up-{index}", [(0.0, 0.2)])
        for shape, (_, spans) in shapes(seconds).items():
            results[shape] = {name: [] for name in CONTENDERS}
            for round_ in range(rounds):
                for index, name in enumerate(CONTENDERS):
                    print(f"… {shape}, round {round_ + 1}: {name}", file=sys.stderr, flush=True)
                    key = f"{shape.replace(' ', '')}-{round_}-{index}"
                    results[shape][name].append(dispatch(pipes, client, prefix, name, key, spans))
            loads.append(f"after {shape}: {loadavg()}")
    finally:
        for pipe in pipes:
            pipe.send(None)
        for process in workers:
            process.join(timeout=10)
        for found in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(found)
        client.close()
    return results, loads


def most(runs: list[Run]) -> int:
    """The most grants in any 1000 ms, in the worst of ``runs``."""
    return max(most_in_window([at for o in outs for at in o.grants], PERIOD) for outs, _ in runs)


def table(found: dict[str, list[Run]], length: float, active: float) -> Table:
    def rate(runs: list[Run]) -> float:
        return statistics.median(sum(o.decisions for o in outs) / active for outs, _ in runs)

    rows, base = [], rate(found[BASELINE])
    for name, runs in found.items():
        every = [o for outcomes, _ in runs for o in outcomes]
        per_process = [o.decisions / active for o in every]
        grants = statistics.median(sum(len(o.grants) for o in outcomes) for outcomes, _ in runs)
        errors, error = sum(o.errors for o in every), next((o.error for o in every if o.error), "")
        rows.append([
            name, count(rate(runs)), f"{count(min(per_process))} … {count(max(per_process))}",
            ratio(rate(runs) / base) if base else "—", count(grants), str(most(runs)),
            f"+{most(runs) - LIMIT}" if most(runs) > LIMIT else "0",
            f"{grants / (LIMIT * length):.1%}", f"{statistics.median(c for _, c in runs):.2f}",
            f"{errors}" + (f" ({error[:60]})" if error else ""),
        ])  # fmt: skip
    headers = ["contender", "decisions/s", "per process (min … max)", f"÷ {BASELINE}", "grants",
               "most in 1000 ms", "excess", "utilisation", "Redis CPU", "errors"]  # fmt: skip
    return Table(headers, rows)


def report(results: dict, loads: list[str], seconds: float, rounds: int, markdown: bool) -> str:
    spans = shapes(seconds)
    lines = [f"{PROCESSES} processes × {CALLERS} callers, limit {LIMIT} per 1000 ms, "
             f"{rounds} rounds per shape; decisions/s and grants are medians over the rounds, "
             "the most in 1000 ms the worst round."]  # fmt: skip
    for shape, found in results.items():
        length, asking_spans = spans[shape]
        asking = ", ".join(f"{a:.1f}–{b:.1f} s" for a, b in asking_spans)
        title = f"{shape} (asking {asking} of {length:.1f} s)"
        body = table(found, length, sum(b - a for a, b in asking_spans))
        over = [name for name, runs in found.items() if most(runs) > LIMIT]
        notes = f"Above the limit in some 1000 ms: {', '.join(over) or 'none'}."
        if markdown:
            lines += [f"## {title}", body.markdown(), notes]
        else:
            lines += [f"{title}\n{body.text()}\n{notes}"]
    cpus = len(os.sched_getaffinity(0))
    lines.append(f"Load average (1, 5, 15 min) on {cpus} CPUs: " + "; ".join(loads) + ".")
    return "\n\n".join(lines)


def markdown(body: str, command: str, server: str, took: float) -> str:
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in VERSIONS)
    return (
        "# Benchmarks: rate limiters shared through Redis\n\n<!-- Written by "
        "bench/redis_limiters.py; run it rather than editing by hand. -->\n\nWritten by "
        f"`{command}` in {took:.0f} s. Redis server {server}; {versions}.\n\n"
        f"{__doc__.partition(chr(10) * 2)[2]}\n{body}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of a shape")
    parser.add_argument("--rounds", type=int, default=2, help="runs per contender and shape")
    parser.add_argument("--quick", action="store_true", help="a smoke run of under a minute")
    parser.add_argument("--write", metavar="PATH", type=Path, help="write the Markdown report")
    args = parser.parse_args()
    interruptible()
    seconds, rounds = (1.5, 1) if args.quick else (args.seconds, args.rounds)
    started = time.perf_counter()
    results, loads = measure(seconds, rounds, f"bench-redis-limiters-{secrets.token_hex(4)}")
    took = time.perf_counter() - started
    print(report(results, loads, seconds, rounds, markdown=False))
    if args.write is not None:
        command = shlex.join([".venv/bin/python", "bench/redis_limiters.py", *sys.argv[1:]])
        with redis.Redis.from_url(URL) as client:
            server = client.info("server")["redis_version"]
        body = report(results, loads, seconds, rounds, markdown=True)
        args.write.write_text(markdown(body, command, server, took))
        print(f"\nwritten to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
