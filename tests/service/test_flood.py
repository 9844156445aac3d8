"""One org floods, another is served as if alone.

``sluicegate serve`` runs as a process of its own with 1,024 file descriptors (a common
default limit), org A's quota of calls in flight at 200. Org A, from another process,
sends 400 calls a second to a partner that never answers: each call it gets accepted
holds a socket until its 30 s budget ends. Without a quota A's calls take every
descriptor within three seconds, and the service can accept no more connections (run
so, this test fails: A's requests end in connection errors, not 429). Org B's calls
(one at a time, to a partner that answers at once) are timed alone and under the flood,
in alternate rounds: B's p95 stays within twice its idle p95, none fails, and A is told
429.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest
from tests.loopback import SLUICEGATE, Api, serve_recording, sluicegate_serve

pytestmark = pytest.mark.slow

QUOTA = 200
FLOOD_RATE = 400  # with 1,024 descriptors and no quota: none left within 3 s
ROUNDS = 3
SAMPLES = 100  # calls of org B per round, idle and flooded

#: Org A: a partner that accepts and never answers, and calls to it at FLOOD_RATE a second
#: (open loop) while switched on: a line "on" on stdin starts the flood (FLOODING is
#: printed once it is refused, or after 3 s), "off" stops it (OFF once its requests have answered);
#: at the end of stdin, the statuses it got are printed.
FLOOD = textwrap.dedent(
    """
    import asyncio, collections, json, sys
    import aiohttp

    class Hang(asyncio.Protocol):
        def data_received(self, data):
            pass

    async def main(base, token, rate):
        loop = asyncio.get_running_loop()
        partner = await loop.create_server(Hang, "127.0.0.1", 0)
        port = partner.sockets[0].getsockname()[1]
        headers = {"Authorization": f"Bearer {token}", "x-gw-ims-org-id": "flooder",
                   "x-sandbox-name": "prod"}
        body = {"journeyId": "flood", "service": "action", "waitSeconds": 0,
                "request": {"method": "POST", "url": f"http://127.0.0.1:{port}/hang"}}
        statuses = collections.Counter()
        refused = asyncio.Event()

        async def one(http):
            try:
                async with http.post(base + "/v1/calls", json=body, headers=headers) as r:
                    statuses[r.status] += 1
                    if r.status == 429:
                        refused.set()
            except Exception as exc:
                statuses[type(exc).__name__] += 1

        async def flood(http):
            tasks, start, n = set(), loop.time(), 0
            try:
                while True:
                    n += 1
                    task = asyncio.create_task(one(http))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    await asyncio.sleep(max(0.0, start + n / rate - loop.time()))
            finally:
                await asyncio.gather(*tasks)

        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            running = None
            while line := (await reader.readline()).strip():
                if line == b"on":
                    refused.clear()
                    running = asyncio.create_task(flood(http))
                    try:  # refused, or long enough to exhaust the descriptors otherwise
                        await asyncio.wait_for(refused.wait(), 3)
                    except asyncio.TimeoutError:
                        pass
                    print("FLOODING", flush=True)
                elif line == b"off":
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
                    print("OFF", flush=True)
        print(json.dumps({str(k): v for k, v in statuses.items()}), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def new_key(data_dir: Path, org: str) -> str:
    done = subprocess.run(
        [*SLUICEGATE, "keys", "create", "--create", "--data-dir", str(data_dir), "--org", org,
         "--role", "caller"], capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


async def timed_calls(api: Api, url: str, n: int) -> tuple[list[float], list[object]]:
    """Make ``n`` calls of org B one after another; their latencies, and what failed."""
    latencies, failed = [], []
    body = {"journeyId": "b", "service": "action", "waitSeconds": 10,
            "request": {"method": "POST", "url": url}}  # fmt: skip
    for _ in range(n):
        start = time.perf_counter()
        try:
            status, answer = await api.post("/v1/calls", body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            failed.append(repr(exc))
            continue
        latencies.append(time.perf_counter() - start)
        if (status, answer.get("outcome")) != (200, "success"):
            failed.append((status, answer))
    return latencies, failed


def p95(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=20)[-1]


async def test_one_orgs_flood_leaves_another_org_served(tmp_path: Path) -> None:
    data = tmp_path / "data"
    flooder, other = new_key(data, "flooder"), new_key(data, "other")
    within = ["prlimit", "--nofile=1024:1024"]
    async with (
        serve_recording() as (partner, _),
        sluicegate_serve(data, "--max-in-flight-per-org", str(QUOTA), within=within) as served,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http,
    ):
        api = Api(served, http, token=other, org="other")
        await timed_calls(api, f"{partner}/warm", 50)
        flood = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOOD, served.base, flooder, str(FLOOD_RATE),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert flood.stdin is not None
        assert flood.stdout is not None
        idle: list[float] = []
        loaded: list[float] = []
        idle_failed: list[object] = []
        loaded_failed: list[object] = []
        try:
            for _ in range(ROUNDS):  # alternately, so that the machine's drift hits both
                times, failed = await timed_calls(api, f"{partner}/b", SAMPLES)
                idle += times
                idle_failed += failed
                flood.stdin.write(b"on\n")
                async with asyncio.timeout(30):
                    assert b"FLOODING\n" == await flood.stdout.readline()
                times, failed = await timed_calls(api, f"{partner}/b", SAMPLES)
                loaded += times
                loaded_failed += failed
                flood.stdin.write(b"off\n")
                async with asyncio.timeout(30):
                    assert b"OFF\n" == await flood.stdout.readline()
        finally:
            flood.stdin.close()
            try:
                async with asyncio.timeout(60):
                    out, _ = await flood.communicate()
            finally:
                if flood.returncode is None:
                    flood.kill()
                    await flood.wait()
        statuses = json.loads(out.decode().strip().splitlines()[-1])

    assert ([], []) == (idle_failed, loaded_failed)
    assert {"202", "429"} == set(statuses), statuses
    assert p95(loaded) <= 2 * p95(idle), (p95(idle), p95(loaded), statuses)
