"""``sluicegate apply``, ``diff`` and ``get``, run as a user runs them: in a subprocess,
against a real service on loopback, and checked through the service's own API.

Each test has a service of its own (uvicorn in the test's process, so the command runs
as an asyncio subprocess that never blocks it); the example file runs against
``sluicegate serve --dev``, with the development key, as the docs run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from tests.loopback import ADOBE, SLUICEGATE, free_port, sluicegate_serve
from tests.service.conftest import WINDOW, Running, StartService, start_service
from tests.service.test_endpoints_api import deploy, spawn
from tests.service.test_endpoints_api import start as start_on_clock
from tests.service.test_metrics import queued

from sluicegate.configs import ConfigKind

__all__ = ["start_service"]  # the fixture, used here outside tests/service

EXAMPLE = Path(__file__).parent.parent / "examples" / "rules.yaml"
CAPPING, THROTTLING = f"{ADOBE}/endpointConfigs", f"{ADOBE}/throttlingConfigs"


@dataclass
class Done:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@dataclass
class Cli:
    """The command with a key of one org in its environment, and the service's API."""

    base: str
    headers: dict[str, str]
    http: aiohttp.ClientSession
    cwd: Path
    running: Running | None = None

    async def __call__(self, *args: str, stdin: str | None = None, **env: str) -> Done:
        """Run ``sluicegate *args`` in ``cwd``; ``env`` adds to (or, empty, removes from)
        its environment."""
        base = {**os.environ, "COLUMNS": "200", "SLUICEGATE_URL": self.base,
                "SLUICEGATE_KEY": self.headers["Authorization"].removeprefix("Bearer "),
                "SLUICEGATE_ORG": self.headers["x-gw-ims-org-id"]}  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *SLUICEGATE, *args, cwd=self.cwd, env={k: v for k, v in (base | env).items() if v},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await process.communicate(stdin.encode() if stdin is not None else None)
        assert process.returncode is not None
        return Done(process.returncode, out.decode(), err.decode())

    async def api(self, method: str, path: str, body: Any = None, sandbox: str = "prod") -> Any:
        """The JSON answer of a request to the service, asserting a 2xx."""
        headers = self.headers | {"x-sandbox-name": sandbox}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as r:
            answer = await r.json() if r.content_length else None
            assert 200 <= r.status < 300, (method, path, r.status, answer)
            return answer

    async def configs(self, kind: str = CAPPING, sandbox: str = "prod") -> list[Any]:
        """The configs of ``kind`` in ``sandbox``, as the Adobe API lists them."""
        path = f"{ADOBE}/list/{kind.rsplit('/', 1)[1]}"
        return list((await self.api("POST", path, sandbox=sandbox))["results"])

    async def journeys(self) -> dict[str, int]:
        found = (await self.api("GET", "/v1/journeys"))["results"]
        return {item["journeyId"]: item["timeoutSeconds"] for item in found}

    def file(self, text: str, name: str = "rules.yaml") -> str:
        (self.cwd / name).write_text(textwrap.dedent(text))
        return name


async def cli_of(running: Running, cwd: Path, role: str = "admin") -> Cli:
    """The command acting with a new key of ``role`` in org acme."""
    headers = await running.key(org="acme", role=role)
    return Cli(base=running.base, headers=headers, http=running.http, cwd=cwd, running=running)


@pytest.fixture
async def cli(start_service: StartService, tmp_path: Path) -> Cli:
    return await cli_of(await start_service(), tmp_path)


RULES = """\
    capping:
      - url: https://api.example.org/a/*
        methods: [GET, post]
        services:
          action:
            maxHttpConnections: 5
            rating: {maxCallsCount: 500, periodInMs: 1000}
      - url: https://api.example.org/b/*
        methods: [PUT]
        services:
          dataSource:
            rating: {maxCallsCount: 10, periodInMs: 60000}
        deployed: false
    throttling:
      - name: crm
        urlPattern: https://crm.example.org/*
        methods: [POST]
        maxThroughput: 300
    journeys:
      - journeyId: checkout
        timeoutSeconds: 10
    """


@pytest.mark.slow
async def test_the_example_applies_to_the_dev_org_then_changes_nothing(tmp_path: Path) -> None:
    """examples/rules.yaml against `serve --dev` with its key: its configs are created
    and deployed as it says, its journeys declared; applied again, "no changes", exit 0."""
    async with sluicegate_serve(tmp_path / "data") as served, aiohttp.ClientSession() as http:
        assert served.token is not None
        headers = {"Authorization": f"Bearer {served.token}", "x-gw-ims-org-id": "demo",
                   "x-sandbox-name": "prod"}  # fmt: skip
        cli = Cli(base=served.base, headers=headers, http=http, cwd=tmp_path)
        first = await cli("apply", "-f", str(EXAMPLE))
        assert (0, "demo/prod: 7 changes") == (first.code, first.lines[0]), first.err
        wanted = yaml.safe_load(EXAMPLE.read_text())
        assert [(c["url"], c.get("deployed", True)) for c in wanted["capping"]] == [
            (c["url"], c["hasBeenDeployed"]) for c in await cli.configs()
        ]
        (throttling,) = await cli.configs(THROTTLING)
        assert ("crm", 300, "deployed") == (
            throttling["name"], throttling["maxThroughput"], throttling["state"])  # fmt: skip
        assert {"checkout": 10, "welcome": 30} == await cli.journeys()
        again = await cli("apply", "-f", str(EXAMPLE))
        assert (0, "demo/prod: no changes\n", "") == (again.code, again.out, again.err)


@pytest.mark.slow
async def test_apply_creates_and_deploys_and_a_second_apply_changes_nothing(cli: Cli) -> None:
    """Every config is created, deployed unless `deployed: false`, journeys declared; the
    same file again prints "no changes" and exits 0."""
    done = await cli("apply", "-f", cli.file(RULES))
    assert 0 == done.code, done.err
    assert [
        "acme/prod: 6 changes",
        "+ create capping GET,POST https://api.example.org/a/*",
        "  deploy capping GET,POST https://api.example.org/a/*",
        "+ create capping PUT https://api.example.org/b/*",
        "+ create throttling POST https://crm.example.org/*",
        "  deploy throttling POST https://crm.example.org/*",
        "+ create journey checkout",
    ] == [line for line in done.lines if not line.startswith("      ")]
    assert "      services.action.rating.maxCallsCount: 500" in done.lines
    # The service's canDeploy warning for dataSource (no maxHttpConnections), at its line.
    assert (
        "rules.yaml:11: warning ERR_ENDPOINTCONFIG_106: capping config: max HTTP "
        "connections not defined: no limitation by default\n"
    ) == done.err
    capping = await cli.configs()
    assert [("deployed", True, ["GET", "POST"]), ("created", False, ["PUT"])] == [
        (c["state"], c["hasBeenDeployed"], c["methods"]) for c in capping
    ]
    (throttling,) = await cli.configs(THROTTLING)
    assert ("deployed", 300) == (throttling["state"], throttling["deployedConfig"]["maxThroughput"])
    assert {"checkout": 10} == await cli.journeys()

    again = await cli("apply", "-f", "rules.yaml")
    assert (0, "acme/prod: no changes\n", "") == (again.code, again.out, again.err)
    assert [c["uid"] for c in capping] == [c["uid"] for c in await cli.configs()]


@pytest.mark.slow
async def test_a_change_is_updated_in_place_then_deployed(cli: Cli) -> None:
    """A deployed config that changes is updated, then deployed again (never undeployed
    in between); one the file now wants undeployed is undeployed, then updated. The uids
    stay; the service enforces exactly what the file says."""
    await cli("apply", "-f", cli.file(RULES))
    before = {c["url"]: c["uid"] for c in await cli.configs()}
    changed = (RULES.replace("maxCallsCount: 500", "maxCallsCount: 800")
               .replace("maxThroughput: 300", "maxThroughput: 400")
               .replace("            maxHttpConnections: 5\n", "")
               .replace("timeoutSeconds: 10", "timeoutSeconds: 12"))  # fmt: skip
    done = await cli("apply", "-f", cli.file(changed))
    assert 0 == done.code, done.err
    assert [
        "acme/prod: 4 changes",
        "~ update capping GET,POST https://api.example.org/a/*",
        "      services.action.rating.maxCallsCount: 500 -> 800",
        "      services.action.maxHttpConnections: 5 -> (none)",
        "  deploy capping GET,POST https://api.example.org/a/*",
        "~ update throttling POST https://crm.example.org/*",  # applied at once: no deploy
        "      maxThroughput: 300 -> 400",
        "~ update journey checkout",
        "      timeoutSeconds: 10 -> 12",
    ] == done.lines
    a = next(c for c in await cli.configs() if c["url"].endswith("/a/*"))
    assert (before[a["url"]], "deployed", 800, -1) == (
        a["uid"], a["state"], a["deployedConfig"]["services"]["action"]["rating"]["maxCallsCount"],
        a["deployedConfig"]["services"]["action"]["maxHttpConnections"])  # fmt: skip
    (throttling,) = await cli.configs(THROTTLING)
    assert ("deployed", 400) == (throttling["state"], throttling["deployedConfig"]["maxThroughput"])
    assert {"checkout": 12} == await cli.journeys()

    undeployed = changed.replace("maxThroughput: 400",
                                 "maxThroughput: 500\n        deployed: false")  # fmt: skip
    done = await cli("apply", "-f", cli.file(undeployed))
    assert [
        "acme/prod: 2 changes",
        "  undeploy throttling POST https://crm.example.org/*",
        "~ update throttling POST https://crm.example.org/*",
        "      maxThroughput: 400 -> 500",
    ] == done.lines
    (throttling,) = await cli.configs(THROTTLING)
    assert ("updated", False, 500) == tuple(
        throttling[field] for field in ("state", "hasBeenDeployed", "maxThroughput"))  # fmt: skip


async def test_dry_run_prints_the_changes_and_makes_none(cli: Cli) -> None:
    """`--dry-run` prints what apply would do and exits 0; the service is unchanged."""
    done = await cli("apply", "-f", cli.file(RULES), "--dry-run")
    assert (0, "acme/prod: 6 changes (dry run: none made)") == (done.code, done.lines[0])
    assert "+ create capping GET,POST https://api.example.org/a/*" in done.lines
    assert ([], [], {}) == (await cli.configs(), await cli.configs(THROTTLING),
                            await cli.journeys())  # fmt: skip


INVALID = """\
    capping:
      - url: https://api.example.org/a/*
        methods: [GET]
        services:
          action:
            rating: {maxCallsCount: 5, periodInMs: 1000}
      - url: https://*.example.org/b/*
        methods: [GET]
        services:
          action:
            rating:
              maxCallsCount: 0
              periodInMs: 1000
    """


async def test_an_invalid_payload_is_shown_at_its_line_and_nothing_changes(cli: Cli) -> None:
    """Every error of an invalid payload is printed at the line of its key with its Adobe
    code; exit 2; not even the valid config before it is created."""
    done = await cli("apply", "-f", cli.file(INVALID))
    assert 2 == done.code
    assert [
        "rules.yaml:7: ERR_ENDPOINTCONFIG_102: capping config: wildchar in url not allowed in "
        "host:port",
        "rules.yaml:12: ERR_ENDPOINTCONFIG_107: capping config: invalid max calls count "
        "(maxCallsCount) for action: expecting an integer from 1 to 2,147,483,647, not 0",
    ] == done.err.splitlines()
    assert ("", []) == (done.out, await cli.configs())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("capping:\n  - url: [\n", "rules.yaml:3: INVALID_YAML: "),
        ("sandbox: prod\ncaping: []\n", "rules.yaml:2: INVALID_FILE: unknown key 'caping'"),
        ("throttling:\n  - urlPattern: https://a.example.org/*\n    methods: [POST]\n"
         "    maxThroughput: 300\n    colour: blue\n",
         "rules.yaml:5: ERR_THROTTLING_CONFIG_106: throttling config: invalid payload: unknown "
         "field 'colour'"),
        ("journeys:\n  - journeyId: j\n    timeoutSeconds: 31\n",
         "rules.yaml:3: INVALID_FILE: timeoutSeconds must be an integer from 1 to 30, not 31"),
        ("journeys:\n  - {journeyId: j, timeoutSeconds: 3}\n"
         "  - {journeyId: j, timeoutSeconds: 4}\n",
         "rules.yaml:3: INVALID_FILE: journey 'j' is already at line 2"),
        ("# nothing\n", "rules.yaml:1: INVALID_FILE: no document"),
        ("journeys:\n  - journeyId: !custom j\n    timeoutSeconds: 3\n",
         "rules.yaml:2: INVALID_FILE: not a value YAML can read: could not determine a "
         "constructor for the tag '!custom'"),
        ("journeys:\n  - journeyId: 2001-02-30\n    timeoutSeconds: 3\n",
         "rules.yaml:2: INVALID_FILE: not a value YAML can read: day is out of range"),
    ],
    ids=["yaml", "unknown-section", "unknown-field", "journey-timeout", "twin-journey", "empty",
         "unknown-tag", "no-such-date"],
)  # fmt: skip
async def test_a_file_that_is_not_valid_is_refused_at_its_line(
    cli: Cli, text: str, expected: str
) -> None:
    """YAML syntax, unknown keys, bad values: `file:line: CODE: message`, exit 2."""
    done = await cli("apply", "-f", cli.file(text))
    assert (2, True, "") == (done.code, done.err.startswith(expected), done.out), done.err


async def test_a_refusal_of_the_service_is_shown_at_the_line_and_exits_1(cli: Cli) -> None:
    """A key that may not edit: the service's 403 at the line of the config, exit 1. A
    sandbox the org does not have: the 404 at the line of the section read there."""
    assert cli.running is not None
    viewer = await cli_of(cli.running, cli.cwd, "viewer")
    done = await viewer("apply", "-f", cli.file(RULES))
    assert (1, "rules.yaml:2: FORBIDDEN: the role 'viewer' may not do this\n") == (
        done.code, done.err)  # fmt: skip
    assert [] == await cli.configs()
    done = await cli("diff", "-f", cli.file("sandbox: nope\n" + textwrap.dedent(RULES)))
    assert (1, "rules.yaml:2: SANDBOX_NOT_FOUND: org has no sandbox named 'nope'\n") == (
        done.code, done.err)  # fmt: skip


async def test_a_throttling_config_outside_production_is_refused_before_any_change(
    cli: Cli,
) -> None:
    """In a development sandbox, a throttling config is 1463 at its line, found before
    the capping config of the same file is created."""
    await cli.api("POST", "/v1/sandboxes", {"name": "dev", "type": "development"})
    done = await cli("apply", "-f", cli.file("sandbox: dev\n" + textwrap.dedent(RULES)))
    assert (1, "rules.yaml:16: 1463: throttling configs can only be created in a production "
               "sandbox\n") == (done.code, done.err)  # fmt: skip
    assert [] == await cli.configs(sandbox="dev")


async def test_throttling_created_in_two_sandboxes_of_an_org_is_refused_before_any_change(
    cli: Cli,
) -> None:
    """An org has one throttling config: a file creating one in each of two production
    sandboxes is 1465 at the second one's line, exit 2, and nothing is created."""
    await cli.api("POST", "/v1/sandboxes", {"name": "eu", "type": "production"})
    throttling = ("throttling:\n  - urlPattern: https://a.example.org/*\n    methods: [POST]\n"
                  "    maxThroughput: 300\n")  # fmt: skip
    text = f"sandbox: prod\n{throttling}---\nsandbox: eu\n{throttling}"
    done = await cli("apply", "-f", cli.file(text))
    assert (2, "rules.yaml:9: 1465: the throttling config at line 3 is the org's only one: an "
               "org has one throttling config\n") == (done.code, done.err)  # fmt: skip
    assert ([], []) == (await cli.configs(THROTTLING), await cli.configs(THROTTLING, "eu"))


@pytest.mark.slow
async def test_prune_deletes_only_what_a_listed_section_leaves_out(cli: Cli) -> None:
    """Without --prune, configs and journeys missing from the file stay. With it, a
    missing config is undeployed then deleted, a missing journey goes back to 30 s; a
    section the file leaves out (throttling here) is not touched."""
    both = RULES.replace("        deployed: false\n", "").replace(
        "timeoutSeconds: 10", "timeoutSeconds: 10\n      - journeyId: welcome\n"
                              "        timeoutSeconds: 5")  # fmt: skip
    assert 0 == (await cli("apply", "-f", cli.file(both))).code
    kept, _ = await cli.configs()
    fewer = """\
        capping:
          - url: https://api.example.org/a/*
            methods: [GET, post]
            services:
              action:
                maxHttpConnections: 5
                rating: {maxCallsCount: 500, periodInMs: 1000}
        journeys:
          - journeyId: checkout
            timeoutSeconds: 10
        """
    left = await cli("apply", "-f", cli.file(fewer))
    assert (0, "acme/prod: no changes\n") == (left.code, left.out)
    done = await cli("apply", "-f", "rules.yaml", "--prune")
    assert 0 == done.code, done.err
    assert [
        "acme/prod: 3 changes",
        "  undeploy capping PUT https://api.example.org/b/*",
        "- delete capping PUT https://api.example.org/b/*",
        "~ update journey welcome",
        "      timeoutSeconds: 5 -> 30",
    ] == done.lines
    assert [kept["uid"]] == [c["uid"] for c in await cli.configs()]
    assert 1 == len(await cli.configs(THROTTLING))
    assert {"checkout": 10, "welcome": 30} == await cli.journeys()
    again = await cli("apply", "-f", "rules.yaml", "--prune")
    assert "acme/prod: no changes\n" == again.out


@pytest.mark.slow
async def test_diff_prints_the_changes_and_exits_4_with_exit_code(cli: Cli) -> None:
    """`diff` prints what apply would do and exits 0; with --exit-code, 4 while there are
    changes and 0 once the file is applied."""
    name = cli.file(RULES)
    done = await cli("diff", "-f", name)
    assert (0, "acme/prod: 6 changes") == (done.code, done.lines[0])
    assert 4 == (await cli("diff", "-f", name, "--exit-code")).code
    assert [] == await cli.configs()
    await cli("apply", "-f", name)
    done = await cli("diff", "-f", name, "--exit-code")
    assert (0, "acme/prod: no changes\n") == (done.code, done.out)


@pytest.mark.slow
async def test_get_configs_and_journeys_in_each_format(cli: Cli) -> None:
    """json and yaml hold the same document (a file apply takes); the table shows each
    config's uid, state and limits, and each journey's timeout."""
    await cli("apply", "-f", cli.file(RULES))
    as_json = json.loads((await cli("get", "configs", "-o", "json")).out)
    as_yaml = yaml.safe_load((await cli("get", "configs", "-o", "yaml")).out)
    assert as_json == as_yaml
    assert {"org": "acme", "sandbox": "prod"} == {k: as_json[k] for k in ("org", "sandbox")}
    assert [
        {"url": "https://api.example.org/a/*", "methods": ["GET", "POST"],
         "services": {"action": {"maxHttpConnections": 5,
                                 "rating": {"maxCallsCount": 500, "periodInMs": 1000}}},
         "deployed": True},
        {"url": "https://api.example.org/b/*", "methods": ["PUT"],
         "services": {"dataSource": {"rating": {"maxCallsCount": 10, "periodInMs": 60000}}},
         "deployed": False},
    ] == as_json["capping"]  # fmt: skip
    assert [{"name": "crm", "urlPattern": "https://crm.example.org/*", "methods": ["POST"],
             "maxThroughput": 300, "deployed": True}] == as_json["throttling"]  # fmt: skip
    table = (await cli("get", "configs")).out
    for config in [*await cli.configs(), *await cli.configs(THROTTLING)]:
        row = next(line for line in table.splitlines() if config["uid"] in line)
        assert config["state"] in row
    assert "action 500/1000ms, 5 conns" in table
    assert "300/s" in table

    journeys = {"org": "acme", "sandbox": "prod",
                "journeys": [{"journeyId": "checkout", "timeoutSeconds": 10}]}  # fmt: skip
    assert journeys == json.loads((await cli("get", "journeys", "-o", "json")).out)
    assert journeys == yaml.safe_load((await cli("get", "journeys", "-o", "yaml")).out)
    row = next(line for line in (await cli("get", "journeys")).out.splitlines()
               if "checkout" in line)  # fmt: skip
    assert "10" in row.replace("checkout", "")


@pytest.mark.slow
async def test_get_configs_yaml_round_trips_through_apply(cli: Cli) -> None:
    """What `get configs -o yaml` prints, applied back, changes nothing (with --prune
    too); applied after everything is deleted, it makes the same configs again."""
    for kind, deployed, payload in [
        (CAPPING, False, {"url": "https://x.example.org/*", "methods": ["delete", "OPTION"],
                          "services": {"action": {"rating": {"maxCallsCount": 7,
                                                             "periodInMs": 70}},
                                       "dataSource": {"maxHttpConnections": 3, "rating": {
                                           "maxCallsCount": 1, "periodInMs": 86400000}}}}),
        (CAPPING, True, {"url": "https://y.example.org/héllo/*", "methods": ["GET"],
                         "services": {"action": {"rating": {"maxCallsCount": 1,
                                                            "periodInMs": 1}}}}),
        (THROTTLING, True, {"name": "t: a 'quoted' name", "description": "x\ny",
                            "urlPattern": "https://z.example.org/*", "methods": ["PUT"],
                            "maxThroughput": 5000}),
    ]:  # fmt: skip
        made = await cli.api("POST", kind, payload)
        if deployed:
            await cli.api("POST", f"{kind}/{made['uid']}/deploy")
    exported = (await cli("get", "configs", "-o", "yaml")).out
    done = await cli("apply", "-f", "-", "--prune", stdin=exported)
    assert (0, "acme/prod: no changes\n") == (done.code, done.out), done.err
    before = json.loads((await cli("get", "configs", "-o", "json")).out)
    for kind in (CAPPING, THROTTLING):
        for config in await cli.configs(kind):
            await cli.api("DELETE", f"{kind}/{config['uid']}?forceDelete=true")
    done = await cli("apply", "-f", "-", stdin=exported)
    assert (0, "acme/prod: 5 changes") == (done.code, done.lines[0]), done.err
    assert before == json.loads((await cli("get", "configs", "-o", "json")).out)


@pytest.mark.slow
async def test_get_queues_shows_the_depth_and_age_of_the_throttling_queue(
    start_service: StartService, tmp_path: Path
) -> None:
    """Calls waiting in the org's throttling queue show in `get queues`: depth, age of
    the oldest, drain rate, whether it is paused; in json, yaml and the table."""
    running, clock, _ = await start_on_clock(start_service)
    cli = await cli_of(running, tmp_path)
    payload = {"name": "t", "urlPattern": "https://api.example.org/thr/*", "methods": ["POST"],
               "maxThroughput": 200}  # fmt: skip
    uid = await deploy(running, ConfigKind.THROTTLING, payload)
    await asyncio.gather(*spawn(running, "/thr/a", 200))
    backlog = spawn(running, "/thr/a", 5)
    await queued(running, 5)
    await clock.advance(0.5)
    expected = [{"uid": uid, "urlPattern": "https://api.example.org/thr/*", "methods": ["POST"],
                 "state": "deployed", "enforced": True, "maxThroughput": 200, "depth": 5,
                 "oldestAgeSeconds": 0.5, "paused": False}]  # fmt: skip
    assert expected == json.loads((await cli("get", "queues", "-o", "json")).out)
    assert expected == yaml.safe_load((await cli("get", "queues", "-o", "yaml")).out)
    row = next(line for line in (await cli("get", "queues")).out.splitlines() if uid in line)
    assert ["no", "200", "5", "0.5"] == row.split()[4:8]
    await cli("queues", "pause", uid)
    assert [True] == [
        q["paused"] for q in json.loads((await cli("get", "queues", "-o", "json")).out)
    ]
    await cli("queues", "resume", uid)
    await clock.advance(WINDOW)
    await asyncio.gather(*backlog)


@pytest.mark.slow
async def test_without_a_key_exit_2_and_without_a_service_exit_3(cli: Cli) -> None:
    """No key: a one-line error and exit 2, before anything is read. A service that
    cannot be reached: a one-line error and exit 3. Never a traceback."""
    name = cli.file(RULES)
    done = await cli("apply", "-f", name, SLUICEGATE_KEY="")
    assert (2, "error: give an API key with --key or SLUICEGATE_KEY\n") == (done.code, done.err)
    nowhere = f"http://127.0.0.1:{free_port()}"
    for args in (("apply", "-f", name), ("diff", "-f", name), ("get", "configs")):
        done = await cli(*args, SLUICEGATE_URL=nowhere)
        unreachable = done.err.startswith(f"error: cannot reach the service at {nowhere}")
        assert (3, True) == (done.code, unreachable), done.err
        assert 1 == len(done.err.splitlines())
