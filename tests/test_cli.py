"""The ``sluicegate`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from tests.loopback import free_port

SLUICEGATE = [sys.executable, "-m", "sluicegate.cli"]


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


async def start_serve(data_dir: Path, port: int) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start `sluicegate serve --dev` and read its output until it is serving."""
    process = await asyncio.create_subprocess_exec(
        *SLUICEGATE, "serve", "--dev", "--port", str(port), "--data-dir", str(data_dir),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    lines: list[str] = []
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while not any("Uvicorn running" in line for line in lines):
            line = (await process.stdout.readline()).decode()
            if not line:
                break
            lines.append(line)
    return process, lines


async def stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(20):
        return await process.wait()


@pytest.mark.slow
async def test_serve_dev_makes_a_key_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`serve --dev` on an empty data dir prints an admin key for org demo and a first
    call, answers with it, and shuts down cleanly on SIGTERM; after a restart the key
    still works and no new one is made."""
    port = free_port()
    process, lines = await start_serve(tmp_path, port)
    try:
        token = next(w for line in lines for w in line.split() if w.startswith("sg_"))
        assert any("curl" in line and "/v1/calls" in line for line in lines)
        headers = {"Authorization": f"Bearer {token}", "x-gw-ims-org-id": "demo",
                   "x-sandbox-name": "prod"}  # fmt: skip
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/v1/sandboxes", headers=headers) as r,
        ):
            assert 200 == r.status
    finally:
        code = await stop(process)
    assert 0 == code

    process, lines = await start_serve(tmp_path, port)
    try:
        assert not any("sg_" in line for line in lines)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/v1/sandboxes", headers=headers) as r,
        ):
            assert 200 == r.status
    finally:
        assert 0 == await stop(process)


@pytest.mark.slow
def test_demo_prints_the_outcome_table() -> None:
    """`demo` runs its burst against a loopback system and prints the outcome table."""
    done = run("demo")
    assert 0 == done.returncode, done.stderr
    assert "How every call ended" in done.stdout
    for journey in ("checkout", "welcome", "enrich"):
        assert journey in done.stdout
