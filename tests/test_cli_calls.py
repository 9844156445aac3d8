"""``sluicegate calls``, run as a user runs it: in a subprocess, against ``serve --dev``.

The service calls a loopback system (:class:`tests.loopback.System`); the commands read
the service's URL, key and org from the environment, as the docs show them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.loopback import (
    SLUICEGATE,
    Api,
    Served,
    System,
    free_port,
    serve_system,
    sluicegate_serve,
    until,
)

from sluicegate.testing import FakeClock

pytestmark = pytest.mark.slow


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[Api, System, dict[str, str]]]:
    """A dev service, the system it calls, and the environment that points the CLI at it."""
    async with (
        serve_system(FakeClock()) as system,
        sluicegate_serve(tmp_path / "data") as served,
        aiohttp.ClientSession() as http,
    ):
        yield Api(served, http), system, environment(served)


def environment(served: Served) -> dict[str, str]:
    assert served.token is not None
    return {**os.environ, "SLUICEGATE_URL": served.base, "SLUICEGATE_KEY": served.token,
            "SLUICEGATE_ORG": "demo"}  # fmt: skip


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``sluicegate calls ARGS``."""
    process = await asyncio.create_subprocess_exec(
        *SLUICEGATE, "calls", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_list_get_and_replay_print_what_the_service_answers(tmp_path: Path) -> None:
    """``list`` prints a table newest first (or JSON, filtered), ``get`` a result view,
    ``replay --wait`` the new call's result; an error answer is exit 1 with its code."""
    async with running(tmp_path) as (api, system, env):
        ok = (await api.call(system.url("ok"), wait=10))["callId"]
        failed = (await api.call(system.url("missing"), wait=10))["callId"]
        table = await cli(env, "list")
        listed = await cli(env, "list", "--outcome", "http_error", "-o", "json")
        got = await cli(env, "get", failed)
        replayed = await cli(env, "replay", failed, "--wait", "10")
        refused = await cli(env, "replay", ok)
    assert (0, "") == table[::2]
    rows = [line.split() for line in table[1].splitlines()]
    assert [["ENDED", "CALL", "JOURNEY", "OUTCOME", "STATUS", "REQUEST"],
            [failed, "load", "http_error", "404", "POST", system.url("missing")],
            [ok, "load", "success", "200", "POST", system.url("ok")]] == [
        rows[0], rows[1][1:], rows[2][1:]]  # fmt: skip
    assert (0, [failed]) == (listed[0], [c["callId"] for c in json.loads(listed[1])["calls"]])
    view = json.loads(got[1])
    assert (0, failed, "http_error") == (got[0], view["callId"], view["outcome"])
    new = json.loads(replayed[1])
    assert (0, "http_error", 2) == (replayed[0], new["outcome"], system.hits["missing"])
    assert new["callId"] not in (ok, failed)
    assert (1, True) == (refused[0], "answered 409: CALL_NOT_REPLAYABLE:" in refused[2])


async def test_tail_prints_each_call_once_in_the_order_its_result_was_written(
    tmp_path: Path,
) -> None:
    """``tail --last 1`` prints the last call, then each call as it ends: calls that end
    while an older one is held come before it, and none is printed twice; SIGTERM ends it
    with exit code 0."""
    async with running(tmp_path) as (api, system, env):
        before = (await api.call(system.url("ok"), wait=10))["callId"]
        tail = await asyncio.create_subprocess_exec(
            *SLUICEGATE, "calls", "tail", "--last", "1", "--interval", "0.05", "-o", "json",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            printed = [await line_of(tail)]  # the last call: tail follows from here on
            held = (await api.call(system.url("hold")))["callId"]
            await until(lambda: system.in_flight == 1)
            quick = [(await api.call(system.url("ok"), wait=10))["callId"] for _ in range(3)]
            system.release.release()
            printed += [await line_of(tail) for _ in range(4)]
            last = (await api.call(system.url("ok"), wait=10))["callId"]
            printed.append(await line_of(tail))
        finally:
            tail.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(tail.communicate(), 30)
    assert [before, *quick, held, last] == [call["callId"] for call in printed]
    assert ("success", 200) == (printed[-1]["outcome"], printed[-1]["status"])
    assert (0, "") == (tail.returncode, err.decode())


async def line_of(process: asyncio.subprocess.Process) -> Any:
    """The next line ``process`` prints, as JSON (fails after 30 s)."""
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line, "the process ended"
    return json.loads(line)


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (("list",), {"SLUICEGATE_KEY": ""}, 2, "error: give an API key"),
        (("list", "-o", "xml"), {}, 2, "error: --output must be table, json or yaml"),
        (("tail", "--interval", "0"), {}, 2, "error: --interval must be between"),
        (("replay", "x", "--wait", "61"), {}, 2, "error: --wait must be between 0 and 60"),
        (("get", "x"), {}, 3, "error: cannot reach the service"),
    ],
    ids=["no-key", "bad-output", "bad-interval", "bad-wait", "unreachable"],
)
async def test_bad_usage_and_no_service_are_one_line_errors(
    args: tuple[str, ...], env: dict[str, str], code: int, message: str
) -> None:
    """Bad usage exits 2 and a service that cannot be reached 3, each with one line on
    stderr, never a traceback."""
    base = {**os.environ, "SLUICEGATE_URL": f"http://127.0.0.1:{free_port()}",
            "SLUICEGATE_KEY": "sg_x", "SLUICEGATE_ORG": "demo"}  # fmt: skip
    status, out, err = await cli(base | env, *args)
    assert (code, "", True, 1) == (status, out, err.startswith(message), len(err.splitlines()))
