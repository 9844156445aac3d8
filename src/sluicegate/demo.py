"""``sluicegate demo``: the guardrails at work against a small, flaky system on loopback.

It serves an external system on 127.0.0.1 that is slow (5-60 ms) and fails now and then
(8% of requests answer 500, 2% drop the connection), deploys a capping rule on its
``/orders`` endpoint and a throttling rule on ``/notify``, sends a burst of calls from
three journeys through a Gate, and prints how every call ended.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.outcomes import CallResult, Outcome
from sluicegate.settings import Settings

ORG = "demo"
SANDBOX = "prod"


@asynccontextmanager
async def flaky_system(rng: random.Random) -> AsyncIterator[str]:
    """An external system on a free loopback port; yields its base URL."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(rng.uniform(0.005, 0.06))
        roll = rng.random()
        if roll < 0.02 and request.transport is not None:
            request.transport.close()  # a reset: the call sees a network error
        if roll < 0.10:
            return web.json_response({"error": "overloaded"}, status=500)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def run_demo(console: Console, *, seed: int = 7) -> dict[tuple[str, str], list[CallResult]]:
    """Run the burst; return the results per (journey, endpoint)."""
    rng = random.Random(seed)
    settings = Settings(allow_loopback=True)
    results: dict[tuple[str, str], list[CallResult]] = {}
    with tempfile.TemporaryDirectory(prefix="sluicegate-demo-") as data_dir:
        async with flaky_system(rng) as base, Gate.open(data_dir, settings=settings) as gate:
            scope: dict[str, Any] = {"org": ORG, "sandbox": SANDBOX}
            rule = {
                "url": f"{base}/orders/*",
                "methods": ["POST"],
                "services": {"action": {"rating": {"maxCallsCount": 150, "periodInMs": 1000},
                                        "maxHttpConnections": 20}},
            }  # fmt: skip
            cap = await gate.rules.create(ConfigKind.CAPPING, payload=rule, **scope)
            await gate.rules.deploy(ConfigKind.CAPPING, uid=cap.uid, **scope)
            throttle = {"name": "notify", "urlPattern": f"{base}/notify/*",
                        "methods": ["POST"], "maxThroughput": 200}  # fmt: skip
            thr = await gate.rules.create(ConfigKind.THROTTLING, payload=throttle, **scope)
            await gate.rules.deploy(ConfigKind.THROTTLING, uid=thr.uid, **scope)

            # (journey, service, method, path, calls, calls per second)
            journeys = (
                ("checkout", "action", "POST", "orders", 600, 300),
                ("welcome", "action", "POST", "notify", 600, 400),
                ("enrich", "dataSource", "GET", "profile", 60, 30),
            )
            plan = [
                (i / rate, journey, service, method, f"{base}/{path}/{i}")
                for journey, service, method, path, calls, rate in journeys
                for i in range(calls)
            ]
            with Progress(console=console, transient=True) as progress:
                bar = progress.add_task("calls", total=len(plan))

                async def one(delay: float, journey: str, service: str, method: str,
                              url: str) -> None:  # fmt: skip
                    await asyncio.sleep(delay)
                    result = await gate.call(
                        org=ORG, sandbox=SANDBOX, journey=journey, service=service,
                        method=method, url=url, body=b"{}", timeout_seconds=5,
                    )  # fmt: skip
                    endpoint = url.split("/")[3]
                    results.setdefault((journey, f"/{endpoint}"), []).append(result)
                    progress.advance(bar)

                await asyncio.gather(*(one(*step) for step in plan))
    return results


def outcome_table(results: dict[tuple[str, str], list[CallResult]]) -> Table:
    """One row per journey and endpoint: counts per outcome, retries and latency."""
    table = Table(title="How every call ended")
    seen = [o for o in Outcome if any(r.outcome is o for rows in results.values() for r in rows)]
    table.add_column("journey")
    table.add_column("endpoint")
    for column in ("calls", *[o.value for o in seen], "retries", "p50 ms", "max queue ms"):
        table.add_column(column, justify="right")
    for (journey, endpoint), rows in sorted(results.items()):
        counts = [sum(r.outcome is o for r in rows) for o in seen]
        latencies = sorted(r.execution_ms for r in rows if r.attempts)
        p50 = f"{latencies[len(latencies) // 2]:.0f}" if latencies else "-"
        queued = f"{max(r.queued_ms for r in rows):.0f}"
        retries = sum(r.retries for r in rows)
        cells = (journey, endpoint, len(rows), *counts, retries, p50, queued)
        table.add_row(*(str(c) for c in cells))
    return table


def main(console: Console | None = None) -> None:
    console = console or Console()
    console.print(
        "[bold]sluicegate demo[/]: /orders capped at 150/s (20 connections), "
        "/notify throttled at 200/s, data sources at the default 15/s"
    )
    results = asyncio.run(run_demo(console))
    console.print(outcome_table(results))
