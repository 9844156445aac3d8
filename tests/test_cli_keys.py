"""``sluicegate keys create|list|revoke``, run as a user runs them: in a subprocess, on a
data dir, on PostgreSQL, or through a running service."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.loopback import SLUICEGATE, free_port, sluicegate_serve
from tests.services import postgres_schema


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    return subprocess.run([*SLUICEGATE, *args], capture_output=True, text=True, timeout=60,
                          env={**environ, "COLUMNS": "200", **(env or {})})  # fmt: skip


async def arun(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """:func:`run` for a test whose event loop serves meanwhile."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    process = await asyncio.create_subprocess_exec(
        *SLUICEGATE, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**environ, **(env or {})},
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def made(data: Path, *args: str) -> dict[str, Any]:
    """The JSON of a key made with ``keys create --output json`` on ``data``."""
    done = run("keys", "create", "--data-dir", str(data), "--create", "-o", "json", *args)
    assert 0 == done.returncode, done.stderr
    return dict(json.loads(done.stdout))


def listed(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    done = run("keys", "list", "-o", "json", *args, env=env)
    assert 0 == done.returncode, done.stderr
    return list(json.loads(done.stdout))


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_role_is_required(tmp_path: Path) -> None:
    """`keys create` without --role is a usage error (exit 2) naming it; nothing is made."""
    done = run("keys", "create", "--data-dir", str(tmp_path / "d"), "--create", "--org", "acme")
    assert (2, True) == (done.returncode, "--role" in done.stderr)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("command", [["create", "--org", "acme", "--role", "admin"], ["list"],
                                     ["revoke", "key_000000000000"]])  # fmt: skip
def test_a_missing_data_dir_is_an_error(tmp_path: Path, command: list[str]) -> None:
    """A data dir that does not exist is exit 2 with a message naming it, and is not made."""
    typo = tmp_path / "typo"
    done = run("keys", *command, "--data-dir", str(typo))
    assert (2, f"error: DATA_DIR_NOT_FOUND: the data dir {typo} does not exist "
               "(give --create to make it)\n") == (done.returncode, done.stderr)  # fmt: skip
    assert not typo.exists()


@pytest.mark.parametrize("command", [["list"], ["revoke", "key_000000000000"]])
def test_list_and_revoke_need_a_data_dir_with_data(tmp_path: Path, command: list[str]) -> None:
    """An existing directory without a service database is exit 2, and stays empty."""
    done = run("keys", *command, "--data-dir", str(tmp_path))
    assert (2, f"error: the data dir {tmp_path} holds no sluicegate data (no service.db)\n") == (
        done.returncode, done.stderr)  # fmt: skip
    assert [] == list(tmp_path.iterdir())


def test_create_makes_the_data_dir_with_create(tmp_path: Path) -> None:
    """`--create` makes a new data dir; the token is alone on the last line and acts."""
    data = tmp_path / "new"
    done = run("keys", "create", "--data-dir", str(data), "--create", "--org", "acme",
               "--role", "caller")  # fmt: skip
    token = done.stdout.strip().splitlines()[-1]
    assert (0, True, 1) == (done.returncode, token.startswith("sg_"), len(token.split()))
    assert ["caller"] == [k["role"] for k in listed("--data-dir", str(data))]


def test_list_shows_every_field_but_the_token(tmp_path: Path) -> None:
    """The list (json, and the table) shows id, org, role, name, state and times, never a
    token; --org keeps one org's keys."""
    data = tmp_path / "data"
    key = made(data, "--org", "acme", "--role", "viewer", "--name", "grafana",
               "--expires-at", "2099-01-01T00:00:00Z")  # fmt: skip
    made(data, "--org", "globex", "--role", "admin")
    table = run("keys", "list", "--data-dir", str(data)).stdout
    everyone = listed("--data-dir", str(data))
    assert [{"keyId": key["keyId"], "org": "acme", "role": "viewer", "name": "grafana",
             "state": "active", "createdAt": key["createdAt"],
             "expiresAt": "2099-01-01T00:00:00Z", "revokedAt": None}] == listed(
        "--data-dir", str(data), "--org", "acme")  # fmt: skip
    assert ["acme", "globex"] == [k["org"] for k in everyone]
    assert key["token"] not in table + json.dumps(everyone)
    assert table.splitlines()[0].split()[:2] == ["KEY", "ID"]
    assert key["keyId"] in table.splitlines()[1]


def test_expires_in_counts_from_now(tmp_path: Path) -> None:
    """`--expires-in 90d` expires 90 days after the key was made (to the second)."""
    key = made(tmp_path, "--org", "acme", "--role", "viewer", "--expires-in", "90d")
    after = seconds(key["expiresAt"]) - seconds(key["createdAt"])
    assert 90 * 86_400 - 60 <= after <= 90 * 86_400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expires-in", "90d", "--expires-at", "2099-01-01"], "not both"),
        (["--expires-in", "ninety days"], "a duration is a number"),
        (["--expires-at", "2001-01-01T00:00:00Z"], "must expire in the future"),
        (["--expires-at", "soon"], "ISO-8601"),
        (["--role", "root"], "INVALID_ROLE"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    """Bad expiries and roles exit 2 with one line on stderr, never a traceback."""
    done = run("keys", "create", "--data-dir", str(tmp_path), "--org", "acme", "--role",
               "viewer", *args)  # fmt: skip
    assert (2, 1, True) == (done.returncode, len(done.stderr.splitlines()),
                            message in done.stderr)  # fmt: skip


def test_revoke_on_the_data_dir(tmp_path: Path) -> None:
    """`keys revoke ID` marks the key revoked; again, it says so and exits 0; an id that
    is not there, or not of --org, exits 1 with KEY_NOT_FOUND."""
    key = made(tmp_path, "--org", "acme", "--role", "viewer")
    wrong_org = run("keys", "revoke", key["keyId"], "--data-dir", str(tmp_path), "--org", "globex")
    first = run("keys", "revoke", key["keyId"], "--data-dir", str(tmp_path), "--org", "acme")
    again = run("keys", "revoke", key["keyId"], "--data-dir", str(tmp_path))
    unknown = run("keys", "revoke", "key_000000000000", "--data-dir", str(tmp_path))
    assert [1, 0, 0, 1] == [d.returncode for d in (wrong_org, first, again, unknown)]
    assert "KEY_NOT_FOUND" in wrong_org.stderr + unknown.stderr
    assert first.stdout == again.stdout
    assert ["revoked"] == [k["state"] for k in listed("--data-dir", str(tmp_path))]


def test_a_place_on_the_command_line_wins_over_the_environment(tmp_path: Path) -> None:
    """SLUICEGATE_DATA_DIR names the data dir; --data-dir given beside SLUICEGATE_URL acts
    on the data dir; --url and --data-dir both on the command line are an error (exit 2)."""
    made(tmp_path, "--org", "acme", "--role", "viewer")
    url = f"http://127.0.0.1:{free_port()}"
    from_env = listed(env={"SLUICEGATE_DATA_DIR": str(tmp_path)})
    from_flag = listed("--data-dir", str(tmp_path), env={"SLUICEGATE_URL": url})
    both = run("keys", "list", "--data-dir", str(tmp_path), "--url", url)
    assert (1, 1, 2) == (len(from_env), len(from_flag), both.returncode)
    assert "--url and --data-dir" in both.stderr


async def test_keys_on_postgresql() -> None:
    """create, list and revoke on the shared database (SLUICEGATE_POSTGRES_URL)."""
    async with postgres_schema() as url:
        env = {"SLUICEGATE_POSTGRES_URL": url}
        code, out, err = await arun("keys", "create", "--org", "acme", "--role", "editor", "-o",
                                    "json", env=env)  # fmt: skip
        assert 0 == code, err
        key = json.loads(out)
        revoked = await arun("keys", "revoke", key["keyId"], env=env)
        code, out, _ = await arun("keys", "list", "-o", "json", env=env)
    assert (0, [(key["keyId"], "editor", "revoked")]) == (
        revoked[0], [(k["keyId"], k["role"], k["state"]) for k in json.loads(out)])  # fmt: skip


@pytest.mark.slow
async def test_keys_through_a_running_service(tmp_path: Path) -> None:
    """With --url and an admin key: create answers the token, list shows the org's keys,
    a revoked key is refused at once by the service; error answers (an unknown id, a
    revoked key) exit 1, an unreachable service 3."""
    async with sluicegate_serve(tmp_path) as served, aiohttp.ClientSession() as http:
        env = {"SLUICEGATE_URL": served.base, "SLUICEGATE_KEY": str(served.token),
               "SLUICEGATE_ORG": "demo"}  # fmt: skip
        code, out, err = await arun("keys", "create", "--role", "viewer", "-o", "json", env=env)
        assert 0 == code, err
        key = json.loads(out)
        headers = {"Authorization": f"Bearer {key['token']}", "x-gw-ims-org-id": "demo",
                   "x-sandbox-name": "prod"}  # fmt: skip
        async with http.get(f"{served.base}/v1/sandboxes", headers=headers) as before:
            pass
        code, out, _ = await arun("keys", "list", "-o", "json", env=env)
        ids = [k["keyId"] for k in json.loads(out)]
        revoked = await arun("keys", "revoke", key["keyId"], env=env)
        async with http.get(f"{served.base}/v1/sandboxes", headers=headers) as after:
            pass
        unknown = await arun("keys", "revoke", "key_000000000000", env=env)
        with_revoked = await arun("keys", "list", env={**env, "SLUICEGATE_KEY": key["token"]})
    gone = await arun("keys", "list", env=env)
    assert (200, 401) == (before.status, after.status)
    assert (2, key["keyId"]) == (len(ids), ids[-1])
    assert [0, 1, 1, 3] == [revoked[0], unknown[0], with_revoked[0], gone[0]]
    assert "answered 404: KEY_NOT_FOUND" in unknown[2]
    assert "answered 401: KEY_REVOKED" in with_revoked[2]


def test_keys_act_on_the_data_dir_of_the_services_settings_file(tmp_path: Path) -> None:
    """With SLUICEGATE_CONFIG set and no place given, `keys` acts on the data dir that
    file gives `serve`, not on ./.sluicegate; a place given still wins."""
    made_key = made(tmp_path / "data", "--org", "acme", "--role", "viewer")
    file = tmp_path / "sluicegate.yaml"
    file.write_text(f"data_dir: {tmp_path / 'data'}\n")
    env = {"SLUICEGATE_CONFIG": str(file)}
    assert [made_key["keyId"]] == [k["keyId"] for k in listed(env=env)]
    other = made(tmp_path / "other", "--org", "acme", "--role", "viewer")
    given = listed("--data-dir", str(tmp_path / "other"), env=env)
    assert [other["keyId"]] == [k["keyId"] for k in given]
    file.write_text("data_dri: x\n")
    done = run("keys", "list", env=env)
    assert (2, True) == (done.returncode, "unknown setting 'data_dri'" in done.stderr)
