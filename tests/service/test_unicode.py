"""Strings that are not valid Unicode (a JSON escape of half a surrogate pair, such as
``"\\udfff"``) answer 400 before anything is accepted, on every route that reads a body,
and one tenant sending them never fails another tenant's calls."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.loopback import System
from tests.service.conftest import Running
from tests.service.test_calls_api import call, deploy_throttling

LONE = "\udfff"
ADOBE = "/journey/orchestration"


def bodies(system: System) -> list[Any]:
    """(method, path, body): one string of each not valid Unicode."""
    rule = {"maxCallsCount": 10, "periodInMs": 1000}
    return [
        ("POST", "/v1/calls", call(system, "ok", request={"headers": {"X-Evil": LONE}})),
        ("POST", "/v1/calls", call(system, "ok", request={"body": f"hi {LONE}"})),
        ("POST", "/v1/calls", call(system, "ok", journeyId=f"j{LONE}")),
        ("POST", "/v1/calls:batch", {"calls": [call(system, f"ok{LONE}")]}),
        ("POST", f"{ADOBE}/endpointConfigs", {"url": system.url(f"{LONE}/*"),
         "methods": ["POST"], "services": {"action": {"rating": rule}}}),
        ("POST", f"{ADOBE}/throttlingConfigs", {"name": f"t{LONE}",
         "urlPattern": system.url("*"), "methods": ["POST"], "maxThroughput": 200}),
    ]  # fmt: skip


async def test_a_lone_surrogate_is_400_on_every_route_that_reads_a_body(
    service: Running, system: System
) -> None:
    """Calls and batches with a lone surrogate: 400 INVALID_REQUEST; configs: 400 with
    Adobe's invalid-payload code, as for a body that is not JSON. Nothing called, nothing
    stored."""
    headers = await service.key()
    answers = [await service.request(method, path, headers, body)
               for method, path, body in bodies(system)]  # fmt: skip
    codes = [(status, a["code"]) for status, a in answers]
    assert [(400, "INVALID_REQUEST")] * 4 == codes[:4]
    assert [(400, "ERR_ENDPOINTCONFIG_112"), (400, "ERR_THROTTLING_CONFIG_106")] == codes[4:]
    listed = await service.request("POST", f"{ADOBE}/list/endpointConfigs", headers, {})
    assert ({}, []) == (system.hits, listed[1]["results"])


async def test_one_tenant_sending_lone_surrogates_never_fails_another(
    service: Running, system: System
) -> None:
    """Two orgs throttled at 200/s submit at once, one of them every call with a lone
    surrogate in a header: its calls are refused, every call of the other is accepted
    (queued together, their writes share the journal's group commits)."""
    good, evil = await service.key(org="good"), await service.key(org="evil")
    for headers in (good, evil):
        await deploy_throttling(service, headers, system.url("call/*"), 200)
    bad = {"headers": {"X": LONE}}
    requests = []
    for n in range(300):
        body = call(system, f"call/{n}", waitSeconds=0)
        requests.append(service.request("POST", "/v1/calls", good, body))
        if n % 10 == 0:
            body = call(system, f"call/e{n}", waitSeconds=0, request=bad)
            requests.append(service.request("POST", "/v1/calls", evil, body))
    answers = await asyncio.gather(*requests)
    statuses = sorted({status for status, _ in answers})
    assert ([202, 400], 300) == (statuses, sum(status == 202 for status, _ in answers))
