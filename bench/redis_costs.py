"""What one call costs Redis: round trips, commands, bytes and Redis CPU, per call.

Why: ``docs/scaling.md`` sizes a deployment from these numbers (how many calls per second
one Redis core decides, how many instances and shards 50,000 and 500,000 calls/s need).
A Redis server of its own is started on a free port (so that nothing else's traffic is
counted), then calls go through a gate on shared storage (Redis + PostgreSQL) to a
loopback system that answers 200 at once, at a given concurrency, in two shapes: calls
under a capping rule (one window), and calls behind a throttling rule (queue, window and
capping). Redis's own counters (``INFO``) give commands, bytes and CPU; the client counts
its round trips (requests and pipelines sent).

Run: ``.venv/bin/python bench/redis_costs.py [--calls N]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.client import Pipeline, Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.loopback import serve_ok
from tests.services import postgres_schema

from sluicegate import ConfigKind, Gate
from sluicegate.settings import Settings
from sluicegate.wiring import Shared

SCOPE = {"org": "bench", "sandbox": "prod"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Any:
    """A Redis of our own, with its append-only file, on a free port."""
    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--dir", data, "--appendonly", "yes", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


class Trips:
    """Counts the client's round trips: single requests and pipelines sent."""

    count = 0

    @classmethod
    def install(cls) -> None:
        single, pipelined = Redis.execute_command, Pipeline.execute

        async def execute_command(self: Redis, *args: Any, **options: Any) -> Any:
            if not isinstance(self, Pipeline):
                cls.count += 1
            return await single(self, *args, **options)

        async def execute(self: Pipeline, raise_on_error: bool = True) -> Any:
            cls.count += 1
            return await pipelined(self, raise_on_error)

        Redis.execute_command = execute_command  # type: ignore[method-assign]
        Pipeline.execute = execute  # type: ignore[method-assign]


async def _info(client: aioredis.Redis) -> dict[str, float]:
    stats, cpu = await client.info("stats"), await client.info("cpu")
    return {
        "commands": stats["total_commands_processed"],
        "in": stats["total_net_input_bytes"],
        "out": stats["total_net_output_bytes"],
        "cpu": cpu["used_cpu_user"] + cpu["used_cpu_sys"],
    }


async def measure(shape: str, redis_url: str, calls: int, concurrency: int) -> dict[str, float]:
    async with postgres_schema() as postgres_url, serve_ok() as base:
        where = Shared(redis_url=redis_url, postgres_url=postgres_url, prefix=f"cost-{shape}")
        settings = Settings(
            allow_loopback=True, allowed_ports=frozenset({80, 443, int(base.rsplit(":", 1)[1])})
        )
        async with Gate.open(where, settings=settings) as gate:
            capping = {"url": f"{base}/*", "methods": ["POST"],
                       "services": {"action": {"rating": {"maxCallsCount": 1_000_000,
                                                           "periodInMs": 1000}}}}  # fmt: skip
            config = await gate.rules.create(ConfigKind.CAPPING, payload=capping, **SCOPE)
            await gate.rules.deploy(ConfigKind.CAPPING, uid=config.uid, **SCOPE)
            if shape == "throttled":
                throttling = {"name": "t", "urlPattern": f"{base}/*", "methods": ["POST"],
                              "maxThroughput": 5000}  # fmt: skip
                config = await gate.rules.create(ConfigKind.THROTTLING, payload=throttling, **SCOPE)
                await gate.rules.deploy(ConfigKind.THROTTLING, uid=config.uid, **SCOPE)
            client = aioredis.from_url(redis_url, decode_responses=True)
            before, trips, started = await _info(client), Trips.count, time.perf_counter()

            async def caller(first: int) -> None:
                for n in range(first, calls, concurrency):
                    result = await gate.call(**SCOPE, journey="j", service="action",
                                             method="POST", url=f"{base}/c/{n}")  # fmt: skip
                    assert result.outcome.value == "success", result

            await asyncio.gather(*(caller(c) for c in range(concurrency)))
            elapsed = time.perf_counter() - started
            trips = Trips.count - trips
            after = await _info(client)
            await client.aclose()
    per = {key: (after[key] - before[key]) / calls for key in before}
    return {"calls/s": calls / elapsed, "trips": trips / calls, "commands": per["commands"],
            "bytes in": per["in"], "bytes out": per["out"],
            "redis µs": per["cpu"] * 1e6}  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    Trips.install()
    rows = []
    with redis_server() as redis_url:
        for shape in ("capped", "throttled"):
            rows.append((shape, await measure(shape, redis_url, args.calls, args.concurrency)))
    load = os.getloadavg()[0]
    print(f"{args.calls} calls per shape, concurrency {args.concurrency}, load {load:.2f}\n")
    columns = list(rows[0][1])
    print("| shape | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for shape, found in rows:
        print(f"| {shape} | " + " | ".join(f"{found[c]:,.2f}" for c in columns) + " |")


if __name__ == "__main__":
    asyncio.run(main())
