"""The ``sluicegate`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from tests.loopback import SLUICEGATE, free_port, serve_recording, sluicegate_serve, until

from sluicegate.call import Call
from sluicegate.matching import throttle_key
from sluicegate.sealing import parse_keys
from sluicegate.storage import QueuedCall
from sluicegate.wiring import open_backend


def run(*args: str) -> subprocess.CompletedProcess[str]:
    # A wide terminal, so rich never shortens the names in the demo's table.
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([*SLUICEGATE, *args], capture_output=True, text=True, timeout=60, env=env)


def test_keys_create_prints_the_token_last(tmp_path: Path) -> None:
    """`keys create` prints a new token alone on the last line of stdout."""
    done = run("keys", "create", "--data-dir", str(tmp_path), "--org", "acme", "--role", "viewer")
    assert 0 == done.returncode
    token = done.stdout.strip().splitlines()[-1]
    assert token.startswith("sg_")
    assert 1 == len(token.split())


def test_keys_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    """An unknown role is a one-line error and exit code 2, never a traceback."""
    done = run("keys", "create", "--data-dir", str(tmp_path), "--org", "acme", "--role", "root")
    assert 2 == done.returncode
    assert "INVALID_ROLE" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_serve_refuses_an_unknown_transport(tmp_path: Path) -> None:
    """``serve --transport`` names aiohttp or reqwest; anything else is a one-line error
    and exit code 2 before anything is opened."""
    done = run("serve", "--data-dir", str(tmp_path / "data"), "--transport", "curl")
    assert (2, "error: setting transport (flag --transport): must be one of aiohttp, "
               "reqwest, not 'curl'\n") == (done.returncode, done.stderr)  # fmt: skip
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
async def test_serve_dev_makes_a_key_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`serve --dev` on an empty data dir prints an admin key for org demo and a first
    call, answers with it, and shuts down cleanly on SIGTERM; after a restart the key
    still works and no new one is made."""
    async with sluicegate_serve(tmp_path) as served:
        token = served.token
        assert token is not None
        assert any("curl" in line and "/v1/calls" in line for line in served.lines)
        headers = {"Authorization": f"Bearer {token}", "x-gw-ims-org-id": "demo",
                   "x-sandbox-name": "prod"}  # fmt: skip
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{served.base}/v1/sandboxes", headers=headers) as r,
        ):
            assert 200 == r.status
    assert 0 == served.process.returncode

    async with sluicegate_serve(tmp_path) as served:
        assert served.token is None
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{served.base}/v1/sandboxes", headers=headers) as r,
        ):
            assert 200 == r.status
    assert 0 == served.process.returncode


@pytest.mark.slow
def test_demo_prints_the_outcome_table() -> None:
    """`demo` runs its burst against a loopback system and prints the outcome table."""
    done = run("demo")
    assert 0 == done.returncode, done.stderr
    assert "How every call ended" in done.stdout
    for journey in ("checkout", "welcome", "enrich"):
        assert journey in done.stdout


@pytest.mark.slow
async def test_serve_opens_sealed_calls_only_with_their_data_key(tmp_path: Path) -> None:
    """A data dir holding a call sealed with a data key: `serve` without the key is a
    one-line error and exit code 3; with it (SLUICEGATE_DATA_KEY) the call is delivered
    whole, its Authorization header included."""
    key = run("data-key").stdout.strip()
    async with serve_recording() as (base, requests):
        backend = await open_backend(tmp_path, parse_keys(key))
        await backend.recover(0)
        call = Call.build(org="demo", sandbox="prod", journey="j", service="action",
                          method="POST", url=f"{base}/sealed",
                          headers={"Authorization": "Bearer partner-secret"})  # fmt: skip
        queue = throttle_key("demo", "t1")
        await backend.queue.push(QueuedCall(call_id="sealed-1", call=call, queue=queue,
                                            enqueued_at=time.time(), rate=200))  # fmt: skip
        await backend.aclose()

        done = run("serve", "--data-dir", str(tmp_path), "--port", str(free_port()))
        assert 3 == done.returncode
        assert "holds sealed calls: give its data key" in done.stderr
        assert "Traceback" not in done.stderr + done.stdout

        async with sluicegate_serve(tmp_path, env={"SLUICEGATE_DATA_KEY": key}):
            await until(lambda: bool(requests))
        assert [("/sealed", "Bearer partner-secret")] == [
            (r.path, r.headers["Authorization"]) for r in requests
        ]
