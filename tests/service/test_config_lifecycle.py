"""The config lifecycle over HTTP, and what it enforces on real calls.

Enforcement is observed on calls made through the running service's gate to a small
aiohttp server on loopback (the service runs in dev mode, which allows loopback).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import serve_ok
from tests.service.conftest import Running, StartService
from tests.service.test_config_api import BASE, CAPPING, KINDS, THROTTLING, create

CAP = "endpointConfigs"
THROTTLE = "throttlingConfigs"


@pytest.fixture
async def system() -> AsyncIterator[str]:
    """The base URL of an external system that answers 200 to any path."""
    async with serve_ok() as base:
        yield base


async def outcomes(running: Running, url: str, count: int) -> list[str]:
    """The outcomes of ``count`` custom-action GETs of ``url``, one after the other."""
    found = []
    for _ in range(count):
        result = await running.runtime.gate.call(
            org="acme", sandbox="prod", journey="j", service="action", method="GET", url=url
        )
        found.append(str(result.outcome))
    return found


def action_cap(url: str, count: int) -> dict[str, Any]:
    """A capping payload: ``count`` custom-action GETs of ``url`` per minute."""
    limits = {"maxHttpConnections": 10, "rating": {"maxCallsCount": count, "periodInMs": 60_000}}
    return {"url": url, "methods": ["GET"], "services": {"action": limits}}


async def test_capping_edit_waits_for_the_next_deploy(
    start_service: StartService, system: str
) -> None:
    """A capping edit is enforced only from its redeploy; until then deployedConfig is."""
    running = await start_service()
    headers = await running.key()
    uid = await create(running, headers, CAP, action_cap(f"{system}/api/*", 2))
    item = f"{BASE}/{CAP}/{uid}"
    url = f"{system}/api/x"
    assert ["success"] * 3 == await outcomes(running, url, 3)  # created: not enforced yet
    await running.request("POST", f"{item}/deploy", headers)
    assert ["success", "success", "capped"] == await outcomes(running, url, 3)

    status, body = await running.request("PUT", item, headers, action_cap(f"{system}/api/*", 5))
    element = body["updatedElement"]
    deployed = element["deployedConfig"]["services"]["action"]["rating"]["maxCallsCount"]
    assert (200, "updated", True, 2) == (status, element["state"], element["hasBeenDeployed"],
                                         deployed)  # fmt: skip
    assert ["capped"] == await outcomes(running, url, 1)  # still the deployed 2 per minute

    assert (204, None) == await running.request("POST", f"{item}/deploy", headers)
    _, got = await running.request("GET", item, headers)
    deployed = got["result"]["deployedConfig"]["services"]["action"]["rating"]["maxCallsCount"]
    assert ("deployed", True, 5) == (got["result"]["state"], got["result"]["hasBeenDeployed"],
                                     deployed)  # fmt: skip
    # 2 attempts already started in this minute: 3 more fit under 5 per minute.
    assert ["success"] * 3 + ["capped"] == await outcomes(running, url, 4)

    assert (204, None) == await running.request("POST", f"{item}/undeploy", headers)
    _, got = await running.request("GET", item, headers)
    assert ("updated", False) == (got["result"]["state"], got["result"]["hasBeenDeployed"])
    assert ["success"] == await outcomes(running, url, 1)


async def test_throttling_edit_applies_at_once(start_service: StartService) -> None:
    """A deployed throttling config takes a PUT at once: deployedConfig is the new payload."""
    running = await start_service()
    headers = await running.key()
    uid = await create(running, headers, THROTTLE, THROTTLING)
    await running.request("POST", f"{BASE}/{THROTTLE}/{uid}/deploy", headers)
    status, body = await running.request("PUT", f"{BASE}/{THROTTLE}/{uid}", headers,
                                         {**THROTTLING, "maxThroughput": 300})  # fmt: skip
    element = body["updatedElement"]
    assert (200, True, 300, 300) == (status, element["hasBeenDeployed"],
        element["maxThroughput"], element["deployedConfig"]["maxThroughput"])  # fmt: skip


@pytest.mark.parametrize(("path", "payload", "code", "message"), [
    pytest.param(CAP, CAPPING, 1451, "Can't delete a deployed endpoint config. Undeploy it "
                 "before deleting it", id="capping"),
    pytest.param(THROTTLE, THROTTLING, 1456, "Can't delete a deployed throttling config. "
                 "Undeploy it before deleting it", id="throttling"),
])  # fmt: skip
async def test_a_deployed_config_needs_force_delete(
    start_service: StartService, path: str, payload: dict[str, Any], code: int, message: str
) -> None:
    """Deleting a deployed config is 409 (1451/1456) unless forceDelete=true."""
    running = await start_service()
    headers = await running.key()
    uid = await create(running, headers, path, payload)
    item = f"{BASE}/{path}/{uid}"
    await running.request("POST", f"{item}/deploy", headers)
    for query in ("", "?forceDelete=false"):
        status, body = await running.request("DELETE", f"{item}{query}", headers)
        assert (409, code, code, "INPUT_OUTPUT_ERROR", message) == (status, body["code"],
            body["error"]["code"], body["error"]["family"], body["error"]["message"])  # fmt: skip
    _, got = await running.request("GET", item, headers)
    assert "deployed" == got["result"]["state"]
    assert (200, {}) == await running.request("DELETE", f"{item}?forceDelete=true", headers)
    assert 404 == (await running.request("GET", item, headers))[0]


async def test_force_delete_stops_enforcement(start_service: StartService, system: str) -> None:
    """Once a deployed capping config is force-deleted, its rule no longer caps calls."""
    running = await start_service()
    headers = await running.key()
    uid = await create(running, headers, CAP, action_cap(f"{system}/*", 1))
    await running.request("POST", f"{BASE}/{CAP}/{uid}/deploy", headers)
    assert ["success", "capped"] == await outcomes(running, f"{system}/a", 2)
    await running.request("DELETE", f"{BASE}/{CAP}/{uid}?forceDelete=true", headers)
    assert ["success", "success"] == await outcomes(running, f"{system}/a", 2)


async def test_throttling_only_in_a_production_sandbox(start_service: StartService) -> None:
    """Throttling in a development sandbox is 400 with code 1463; capping is fine."""
    running = await start_service()
    admin = await running.key()
    await running.request("POST", "/v1/sandboxes", admin, {"name": "dev", "type": "development"})
    dev = await running.key(sandbox="dev")
    status, body = await running.request("POST", f"{BASE}/{THROTTLE}", dev, THROTTLING)
    assert (400, 1463, 1463) == (status, body["code"], body["error"]["code"])
    assert 200 == (await running.request("POST", f"{BASE}/{CAP}", dev, CAPPING))[0]


async def test_one_throttling_config_per_org(start_service: StartService) -> None:
    """A second throttling config in an org is 400 with code 1465 (Adobe's answer), from
    any sandbox."""
    running = await start_service()
    prod = await running.key()
    await running.request("POST", "/v1/sandboxes", prod, {"name": "prod2", "type": "production"})
    uid = await create(running, prod, THROTTLE, THROTTLING)
    for headers in (prod, await running.key(sandbox="prod2")):
        status, body = await running.request("POST", f"{BASE}/{THROTTLE}", headers, THROTTLING)
        assert (400, 1465, 1465) == (status, body["code"], body["error"]["code"])
    assert 200 == (await running.request("POST", f"{BASE}/{THROTTLE}",
                                         await running.key("globex"), THROTTLING))[0]  # fmt: skip
    await running.request("DELETE", f"{BASE}/{THROTTLE}/{uid}", prod)
    assert 200 == (await running.request("POST", f"{BASE}/{THROTTLE}", prod, THROTTLING))[0]


@pytest.mark.parametrize(("path", "payload"), KINDS)
async def test_configs_survive_a_restart(
    start_service: StartService, tmp_path: Path, path: str, payload: dict[str, Any]
) -> None:
    """A deployed config is still there, deployed, after the service restarts."""
    running = await start_service(tmp_path / "data")
    headers = await running.key()
    uid = await create(running, headers, path, payload)
    await running.request("POST", f"{BASE}/{path}/{uid}/deploy", headers)
    _, before = await running.request("GET", f"{BASE}/{path}/{uid}", headers)
    await running.stop()
    again = await start_service(tmp_path / "data")
    assert (200, before) == await again.request("GET", f"{BASE}/{path}/{uid}", headers)
