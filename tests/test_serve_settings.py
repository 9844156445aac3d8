"""``sluicegate serve``'s settings, as an operator gives them: a YAML file, ``SLUICEGATE_*``
variables and flags, checked before anything starts; ``config show`` says where each came
from."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import aiohttp
import pytest
from tests.loopback import SLUICEGATE, serve_ok, sluicegate_serve

import sluicegate

SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LW9mLTMyLWJ5dGVzIQ=="


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLUICEGATE_")}
    return subprocess.run([*SLUICEGATE, *args], capture_output=True, text=True, timeout=60,
                          env={**clean, "COLUMNS": "200", **(env or {})}, cwd=cwd)  # fmt: skip


def shown(*args: str, env: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    done = run("config", "show", "-o", "json", *args, env=env)
    assert 0 == done.returncode, done.stderr
    found: dict[str, dict[str, object]] = json.loads(done.stdout)
    return found


def test_a_flag_wins_over_the_environment_which_wins_over_the_file(tmp_path: Path) -> None:
    """Each setting comes from its flag, else its variable, else the file (its line
    named), else its default; ``config show`` prints the value and where it came from."""
    file = tmp_path / "sluicegate.yaml"
    file.write_text("# the operator's file\nport: 7001\nlog_format: json\n"
                    "allowed_ports: [443, 8443]\n")  # fmt: skip
    env = {"SLUICEGATE_CONFIG": str(file), "SLUICEGATE_PORT": "7002"}

    found = shown("--port", "7003", env=env)
    assert {"value": 7003, "source": "flag --port"} == found["port"]
    assert {"value": "json", "source": f"file {file}:3"} == found["log_format"]
    assert {"value": [443, 8443], "source": f"file {file}:4"} == found["allowed_ports"]
    assert {"value": "127.0.0.1", "source": "default"} == found["host"]

    assert {"value": 7002, "source": "env SLUICEGATE_PORT"} == shown(env=env)["port"]
    assert {"value": 7001, "source": f"file {file}:2"} == shown("--config", str(file))["port"]


def test_config_show_never_prints_a_secret(tmp_path: Path) -> None:
    """The data key, the callback secret and a database password are set, shown as set,
    and never printed, in any format."""
    key = run("data-key").stdout.strip()
    env = {"SLUICEGATE_DATA_KEY": key, "SLUICEGATE_CALLBACK_SECRET": SECRET,
           "SLUICEGATE_POSTGRES_URL": "postgresql://sg:pg-password@db/sg",
           "SLUICEGATE_REDIS_URL": "redis://cache:6379/0?password=redis-password"}  # fmt: skip
    for output in ("table", "json", "yaml"):
        done = run("config", "show", "-o", output, env=env)
        assert 0 == done.returncode, done.stderr
        for secret in (key, SECRET, "pg-password", "redis-password"):
            assert secret not in done.stdout
    found = shown(env=env)
    assert "*** (set)" == found["data_key"]["value"]
    assert "postgresql://sg:***@db/sg" == found["postgres_url"]["value"]
    assert "redis://cache:6379/0" == found["redis_url"]["value"]
    dsn = {**env, "SLUICEGATE_POSTGRES_URL": "host=db password=pg-password"}
    assert "*** (set)" == shown(env=dsn)["postgres_url"]["value"]


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ({"file": "alowed_ports: [443]\n"},
         "unknown setting 'alowed_ports' in file {file}:1 (did you mean 'allowed_ports'?)"),
        ({"file": "port: [1, 2\n"}, "not valid YAML"),
        ({"env": {"SLUICEGATE_ALLOWED_NETWORKS": "10.0.0.1/8"}},
         "setting allowed_networks (env SLUICEGATE_ALLOWED_NETWORKS): '10.0.0.1/8' is not a "
         "network in CIDR form"),
        ({"flags": ["--retry-schedule", "1,2,3,4"]}, "retry_schedule: at most 3 delays"),
        ({"flags": ["--port", "99999"]}, "setting port (flag --port): must be 0-65535"),
        ({"flags": ["--log-level", "loud"]}, "setting log_level (flag --log-level): must be"),
        ({"env": {"SLUICEGATE_CALLBACK_SECRET": "short"}},
         "setting callback_secret (env SLUICEGATE_CALLBACK_SECRET): must be at least 16 bytes"),
        ({"env": {"SLUICEGATE_REDIS_URL": "redis://localhost:6379/0"}},
         "settings redis_url and postgres_url: shared storage needs both"),
        ({"flags": ["--data-key", "not-a-key"]}, "setting data_key (flag --data-key):"),
        ({"env": {"SLUICEGATE_CALLBACK_SECRET_FILE": "/nonexistent/secret"}},
         "setting callback_secret_file: cannot read it: No such file or directory"),
        ({"env": {"SLUICEGATE_CALLBACK_SECRET_FILE": "/nonexistent/secret",
                  "SLUICEGATE_CALLBACK_SECRET": SECRET}},
         "settings callback_secret (env SLUICEGATE_CALLBACK_SECRET) and callback_secret_file: "
         "give one of them"),
        ({"file": "port: 2001-02-30\n"}, "not valid YAML: day is out of range for month"),
    ],
    ids=["unknown-key", "bad-yaml", "bad-network", "four-retries", "port", "log-level",
         "short-secret", "redis-alone", "bad-data-key", "secret-file", "secret-twice",
         "no-such-date"],
)  # fmt: skip
def test_serve_refuses_a_wrong_setting_and_names_it(
    tmp_path: Path, how: dict[str, object], named: str
) -> None:
    """A wrong setting is one line on stderr naming it and where it came from, exit code
    2, before anything is opened or listened on."""
    file = tmp_path / "sluicegate.yaml"
    file.write_text(str(how.get("file", "")))
    env = {"SLUICEGATE_CONFIG": str(file), **how.get("env", {})}  # type: ignore[dict-item]
    data = tmp_path / "data"
    done = run("serve", "--create", "--data-dir", str(data), *how.get("flags", []), env=env)  # type: ignore[misc]
    assert 2 == done.returncode
    assert named.format(file=file) in done.stderr
    assert 1 == len(done.stderr.strip().splitlines()), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not data.exists()


def test_a_data_dir_that_does_not_exist_is_an_error_unless_create(tmp_path: Path) -> None:
    """A typo in --data-dir never starts a service on a new, empty database."""
    done = run("serve", "--data-dir", str(tmp_path / "typo"))
    assert 2 == done.returncode
    assert f"{tmp_path / 'typo'} does not exist: pass --create" in done.stderr
    assert not (tmp_path / "typo").exists()


def test_a_busy_port_is_an_error_before_serving(tmp_path: Path) -> None:
    """A port another process listens on: a one-line error, exit code 3, and nothing
    said about serving."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run("serve", "--dev", "--data-dir", str(tmp_path), "--port", str(port))
    assert 3 == done.returncode
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n" == done.stderr
    assert "serving" not in done.stdout


def test_version_prints_the_installed_version() -> None:
    done = run("--version")
    assert (0, f"sluicegate {sluicegate.__version__}\n") == (done.returncode, done.stdout)


async def call(http: aiohttp.ClientSession, base: str, token: str, url: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}", "x-gw-ims-org-id": "acme",
               "x-sandbox-name": "prod"}  # fmt: skip
    body = {"journeyId": "j", "service": "action", "request": {"method": "GET", "url": url}}
    async with http.post(f"{base}/v1/calls", json=body, headers=headers) as response:
        assert 200 == response.status
        result: dict[str, object] = await response.json()
        return result


@pytest.mark.slow
async def test_the_allowlist_lets_a_listed_loopback_port_through_and_blocks_the_rest(
    tmp_path: Path,
) -> None:
    """Without --dev, loopback is refused unless the operator allows it: with 127.0.0.0/8
    in allowed_networks and one port in allowed_ports (from the settings file), a call to
    that port succeeds, a call to another loopback port is blocked, and a call to the
    listed port on an address outside the listed networks is blocked too."""
    async with serve_ok() as listed, serve_ok() as other:
        port = int(listed.rsplit(":", 1)[1])
        file = tmp_path / "sluicegate.yaml"
        file.write_text(f"allowed_networks: [127.0.0.0/8]\nallowed_ports: [{port}]\n")
        data = tmp_path / "data"
        made = run("keys", "create", "--create", "--data-dir", str(data), "--org", "acme",
                   "--role", "admin")  # fmt: skip
        assert 0 == made.returncode, made.stderr
        token = made.stdout.strip().splitlines()[-1]
        async with (
            sluicegate_serve(data, "--config", str(file), dev=False) as served,
            aiohttp.ClientSession() as http,
        ):
            assert "success" == (await call(http, served.base, token, f"{listed}/x"))["outcome"]
            assert "blocked" == (await call(http, served.base, token, f"{other}/x"))["outcome"]
            private = f"http://10.255.255.1:{port}/x"
            assert "blocked" == (await call(http, served.base, token, private))["outcome"]


@pytest.mark.slow
async def test_cors_answers_only_the_listed_origins(tmp_path: Path) -> None:
    """With cors_origins set, a browser's preflight from a listed origin is allowed and
    the headers a client needs are exposed; another origin gets no CORS header."""
    async with (
        sluicegate_serve(tmp_path, "--cors-origins", "https://ops.example.org") as served,
        aiohttp.ClientSession() as http,
    ):
        ask = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
        for origin, allowed in (("https://ops.example.org", True), ("https://evil.test", False)):
            headers = {"Origin": origin, **ask}
            async with http.options(f"{served.base}/v1/calls", headers=headers) as r:
                assert allowed == (r.headers.get("access-control-allow-origin") == origin)
            async with http.get(f"{served.base}/healthz", headers={"Origin": origin}) as r:
                assert 200 == r.status
                assert allowed == (r.headers.get("access-control-allow-origin") == origin)
                if allowed:
                    assert "Retry-After" in r.headers["access-control-expose-headers"]


def test_every_setting_is_documented() -> None:
    """docs/settings.md has a row for every setting, with its variable and flag."""
    from sluicegate.service.options import SETTINGS

    text = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    missing = [s.name for s in SETTINGS if f"| `{s.name}` | `{s.env}` | `{s.flag}" not in text]
    assert [] == missing
