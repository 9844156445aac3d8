"""``sluicegate queues``, run as a user runs it: a subprocess against ``serve --dev``.

The service runs in a process of its own (its development key, org ``demo``); its
throttling queue holds calls to a recording system on loopback while it is paused, so
nothing here depends on time passing.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from tests.loopback import ADOBE, SLUICEGATE, Api, free_port, serve_recording, sluicegate_serve

pytestmark = pytest.mark.slow


@dataclass
class Env:
    """The service, its API with the development key, the queue's id, the recording
    system, and the environment the commands run with."""

    api: Api
    uid: str
    target: str
    requests: list[web.Request]
    env: dict[str, str]

    def run(self, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SLUICEGATE, "queues", *args], input=stdin, capture_output=True,
                              text=True, timeout=60, env={**self.env, **env})  # fmt: skip

    async def queue_calls(self, n: int) -> None:
        for i in range(n):
            assert "queued" == (await self.api.call(f"{self.target}/c{i}"))["state"]


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Env]:
    async with (
        serve_recording() as (target, requests),
        sluicegate_serve(tmp_path / "data") as served,
        aiohttp.ClientSession() as http,
    ):
        api = Api(served, http)
        payload = {"name": "t", "urlPattern": f"{target}/*", "methods": ["POST"],
                   "maxThroughput": 200}  # fmt: skip
        status, created = await api.post(f"{ADOBE}/throttlingConfigs", payload)
        assert 200 == status, created
        assert (204, None) == await api.post(f"{ADOBE}/throttlingConfigs/{created['uid']}/deploy")
        env = {**os.environ, "SLUICEGATE_URL": served.base, "SLUICEGATE_KEY": str(served.token),
               "SLUICEGATE_ORG": "demo", "COLUMNS": "200"}  # fmt: skip
        yield Env(api, created["uid"], target, requests, env)


def listed(cli: Env) -> list[dict[str, object]]:
    done = cli.run("list", "-o", "json")
    assert 0 == done.returncode, done.stderr
    found: list[dict[str, object]] = json.loads(done.stdout)
    return found


async def test_pause_list_and_resume(cli: Env) -> None:
    """`pause` says the queue is paused; `list` shows it, with the calls it holds, in a
    table or as JSON; `resume` lets them go."""
    paused = cli.run("pause", cli.uid)
    assert (0, f"queue {cli.uid}: paused, 0 calls waiting\n") == (paused.returncode,
                                                                   paused.stdout)  # fmt: skip
    await cli.queue_calls(2)
    table = cli.run("list").stdout.splitlines()
    assert ["ID", "PAUSED", "DEPTH", "OLDEST", "RATE/S"] == table[0].split()
    assert [cli.uid, "yes", "2", "200"] == [table[1].split()[n] for n in (0, 1, 2, 4)]
    assert [(cli.uid, True, 2)] == [(q["id"], q["paused"], q["depth"]) for q in listed(cli)]
    resumed = cli.run("resume", cli.uid, "-o", "yaml")
    assert (0, "paused: false") == (resumed.returncode, resumed.stdout.splitlines()[2])


async def test_purge_asks_first_and_ends_the_waiting_calls(cli: Env) -> None:
    """`purge` asks with the number of calls it would end: no (or no answer) purges
    nothing and exits 2; yes purges them, unsent; `--yes` does not ask."""
    cli.run("pause", cli.uid)
    await cli.queue_calls(3)
    for answer in ("n\n", ""):
        declined = cli.run("purge", cli.uid, stdin=answer)
        assert (2, "") == (declined.returncode, declined.stdout)
        assert f"End the 3 calls waiting in queue {cli.uid}, unsent?" in declined.stderr
        assert "error: nothing purged" in declined.stderr
    assert [3] == [q["depth"] for q in listed(cli)]
    agreed = cli.run("purge", cli.uid, stdin="y\n")
    assert (0, f"purged 3 calls; queue {cli.uid}: paused, 0 calls waiting\n") == (
        agreed.returncode, agreed.stdout)  # fmt: skip
    await cli.queue_calls(1)
    forced = cli.run("purge", cli.uid, "--yes", "-o", "json")
    assert (0, 1, "") == (forced.returncode, json.loads(forced.stdout)["purged"], forced.stderr)
    cli.run("resume", cli.uid)
    assert ([0], []) == ([q["depth"] for q in listed(cli)], cli.requests)


async def test_mistakes_are_one_line_errors_with_their_exit_codes(cli: Env) -> None:
    """An unknown queue (the service's 404) exits 1; a bad option or no key exits 2; a
    service that does not answer exits 3. Each is one line on stderr, no traceback."""
    seen = [
        cli.run("pause", "no-such-queue"),
        cli.run("purge", "no-such-queue", "--yes"),
        cli.run("purge", "no-such-queue"),
        cli.run("list", "-o", "xml"),
        cli.run("resume", cli.uid, SLUICEGATE_KEY=""),
        cli.run("list", SLUICEGATE_URL=f"http://127.0.0.1:{free_port()}"),
    ]
    assert [1, 1, 1, 2, 2, 3] == [done.returncode for done in seen]
    assert "QUEUE_NOT_FOUND" in seen[0].stderr
    for done in seen:
        assert (1, "error: ") == (len(done.stderr.splitlines()), done.stderr[:7]), done.stderr
        assert "Traceback" not in done.stdout + done.stderr
