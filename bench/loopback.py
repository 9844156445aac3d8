"""The external system of the HTTP benchmarks: an aiohttp.web server in its own process.

Run as a script, it binds 127.0.0.1 on a free port, prints the port on one line and
serves until it is terminated. It answers ``POST /ok`` with 200 and a small JSON body,
and ``POST /flaky`` the same way except that 30% of the requests get a 500, drawn from
a seeded random sequence: deterministic, yet a retry is no more likely to fail than any
other request (a fixed pattern such as "3 in every 10" makes a call's attempts fail
together whenever retries land a fixed number of requests apart). ``GET /stats``
returns the requests served and failed so far and the server's CPU seconds, so the
client can count attempts and tell whether the server was the bottleneck of a run.

:func:`serve` starts the process, yields the base URL and stops it at the end.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

OK_BODY = b'{"ok":true}'
ERROR_BODY = b'{"error":"unavailable"}'
FAILURE_RATE = 0.3
FAILURE_SEED = 2024
START_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ServerStats:
    """What the server has done since it started."""

    requests: int
    failed: int  # requests answered 500 on purpose
    cpu_seconds: float


def build_app() -> web.Application:
    served = failed = 0
    draw = random.Random(FAILURE_SEED).random

    async def ok(request: web.Request) -> web.Response:
        nonlocal served
        served += 1
        await request.read()
        return web.Response(body=OK_BODY, content_type="application/json")

    async def flaky_answer(request: web.Request) -> web.Response:
        nonlocal served, failed
        served += 1
        await request.read()
        if draw() < FAILURE_RATE:
            failed += 1
            return web.Response(status=500, body=ERROR_BODY, content_type="application/json")
        return web.Response(body=OK_BODY, content_type="application/json")

    async def stats(request: web.Request) -> web.Response:
        doc = {"requests": served, "failed": failed, "cpu_seconds": time.process_time()}
        return web.json_response(doc)

    app = web.Application()
    app.router.add_post("/ok", ok)
    app.router.add_post("/flaky", flaky_answer)
    app.router.add_get("/stats", stats)
    return app


async def _serve_forever() -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()  # until the parent terminates the process


def main() -> None:
    # Ctrl-C reaches the whole process group; the parent stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_forever())
    else:
        uvloop.run(_serve_forever())


@contextmanager
def serve() -> Iterator[str]:
    """Start the server process; yield its base URL (``http://127.0.0.1:PORT``)."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve())],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the loopback server did not start (said {line!r})")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def server_stats(base: str) -> ServerStats:
    """Ask the server what it has done (a blocking call, made between timed runs)."""
    with urllib.request.urlopen(f"{base}/stats", timeout=START_TIMEOUT) as response:
        doc = json.load(response)
    return ServerStats(
        requests=int(doc["requests"]),
        failed=int(doc["failed"]),
        cpu_seconds=float(doc["cpu_seconds"]),
    )


if __name__ == "__main__":
    main()
