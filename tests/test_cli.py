"""The ``sluicegate`` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import aiohttp
import pytest
from tests.loopback import SLUICEGATE, sluicegate_serve


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
    assert (2, "error: --transport: transport must be 'aiohttp' or 'reqwest'\n") == (
        done.returncode, done.stderr)  # fmt: skip
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
