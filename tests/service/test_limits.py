"""How much a request may carry: bodies over their limit answer 413, too many or too
large headers 431, with the JSON error model, before any of it is read into a call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.loopback import System, until
from tests.service.conftest import Running, StartService
from tests.service.test_calls_api import call

from sluicegate.service.limits import MAX_HEADERS
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock

LIMIT, BATCH_LIMIT = 2_000, 20_000


@pytest.fixture
async def service(start_service: StartService, clock: FakeClock) -> Running:
    settings = Settings(allow_loopback=True, max_request_bytes=LIMIT, max_batch_bytes=BATCH_LIMIT)
    return await start_service(clock=clock, settings=settings)


def padded(system: System, size: int) -> dict[str, Any]:
    """A call whose JSON is at least ``size`` bytes."""
    return call(system, "ok", request={"body": "x" * size})


async def test_a_body_over_the_limit_is_413_and_calls_nothing(
    service: Running, system: System
) -> None:
    """Over the limit by its Content-Length, or while read (chunked, no length): 413
    PAYLOAD_TOO_LARGE; just under it, the call is made."""
    headers = await service.key()
    status, problem = await service.request("POST", "/v1/calls", headers, padded(system, LIMIT))
    chunked = json.dumps(padded(system, LIMIT)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(chunked), 500):
            yield chunked[start : start + 500]

    async with service.http.post(service.base + "/v1/calls", data=chunks(), headers={
            **headers, "Content-Type": "application/json"}) as response:  # fmt: skip
        streamed = response.status, (await response.json())["code"]
    assert ((413, "PAYLOAD_TOO_LARGE"), (413, "PAYLOAD_TOO_LARGE"), {}) == (
        (status, problem["code"]), streamed, system.hits)  # fmt: skip
    status, done = await service.request("POST", "/v1/calls", headers, padded(system, LIMIT // 2))
    assert (200, "success") == (status, done["outcome"])


async def test_a_batch_has_its_own_larger_limit(service: Running, system: System) -> None:
    """A batch may be larger than one request (its own limit), and not beyond it."""
    headers = await service.key()
    calls = [padded(system, LIMIT // 2)] * 5  # over one request's limit, under a batch's
    status, body = await service.request("POST", "/v1/calls:batch", headers, {"calls": calls})
    assert (200, ["done"] * 5) == (status, [r["state"] for r in body["results"]])
    calls = [padded(system, LIMIT // 2)] * 20
    status, problem = await service.request("POST", "/v1/calls:batch", headers, {"calls": calls})
    assert (413, "PAYLOAD_TOO_LARGE") == (status, problem["code"])


async def test_a_config_over_the_limit_is_413_in_adobes_envelope(service: Running) -> None:
    """On the configuration API the 413 carries Adobe's error envelope too."""
    headers = await service.key()
    config = {"name": "x" * LIMIT, "urlPattern": "https://api.example.org/*",
              "methods": ["POST"], "maxThroughput": 200}  # fmt: skip
    status, problem = await service.request(
        "POST", "/journey/orchestration/throttlingConfigs", headers, config
    )
    assert (413, "PAYLOAD_TOO_LARGE", "PAYLOAD_TOO_LARGE") == (
        status, problem["code"], problem["error"]["code"])  # fmt: skip


@pytest.mark.parametrize(
    "extra",
    [
        {f"x-extra-{n}": "1" for n in range(MAX_HEADERS)},
        {"x-large": "y" * Settings().max_header_bytes},
    ],
    ids=["too-many", "too-large"],
)
async def test_too_many_or_too_large_headers_are_431(
    service: Running, system: System, extra: dict[str, str]
) -> None:
    """More than MAX_HEADERS headers, or more than Settings.max_header_bytes of them: 431."""
    headers = await service.key()
    status, problem = await service.request(
        "POST", "/v1/calls", headers | extra, call(system, "ok")
    )
    assert (431, "HEADERS_TOO_LARGE", {}) == (status, problem["code"], system.hits)


async def test_bodies_over_the_budget_of_all_requests_are_503_and_lose_nothing(
    start_service: StartService, clock: FakeClock, system: System
) -> None:
    """Two bodies fit the budget of all bodies held at once, a third does not: 503
    SERVER_BUSY with Retry-After, calling nothing. The two held calls end as usual, and
    once they have answered, the budget is free again."""
    settings = Settings(allow_loopback=True, max_bodies_bytes=3 * LIMIT)
    service = await start_service(clock=clock, settings=settings)
    headers = await service.key()
    held = [call(system, "hold", waitSeconds=30, request={"body": "x" * LIMIT})] * 2
    waiting = [asyncio.create_task(service.request("POST", "/v1/calls", headers, body))
               for body in held]  # fmt: skip
    await until(lambda: system.in_flight == 2)

    async with service.http.post(service.base + "/v1/calls", headers=headers,
                                 json=padded(system, LIMIT)) as response:  # fmt: skip
        refused = response.status, (await response.json())["code"], response.headers["Retry-After"]
    called = system.hits.get("ok", 0)
    system.release.release()
    system.release.release()
    ended = [(status, body["outcome"]) for status, body in await asyncio.gather(*waiting)]
    again, done = await service.request("POST", "/v1/calls", headers, padded(system, LIMIT))

    assert ((503, "SERVER_BUSY", "1"), 0) == (refused, called)
    assert ([(200, "success")] * 2, (200, "success")) == (ended, (again, done["outcome"]))


async def test_an_org_over_its_quota_in_flight_gets_429_and_another_org_is_served(
    start_service: StartService, clock: FakeClock, system: System
) -> None:
    """With one call of its org in flight (quota 1), a second call answers 429
    TOO_MANY_CALLS_IN_FLIGHT with Retry-After, alone or in a batch; another org's call
    is made; the held call ends as usual."""
    settings = Settings(allow_loopback=True, max_in_flight_per_org=1)
    service = await start_service(clock=clock, settings=settings)
    flooder, other = await service.key("flooder"), await service.key("other")
    waiting = asyncio.create_task(
        service.request("POST", "/v1/calls", flooder, call(system, "hold", waitSeconds=30))
    )
    await until(lambda: system.in_flight == 1)

    async with service.http.post(service.base + "/v1/calls", headers=flooder,
                                 json=call(system, "ok")) as response:  # fmt: skip
        refused = response.status, (await response.json())["code"], response.headers["Retry-After"]
    _, batch = await service.request(
        "POST", "/v1/calls:batch", flooder, {"calls": [call(system, "ok")]}
    )
    status, served = await service.request("POST", "/v1/calls", other, call(system, "ok"))
    system.release.release()
    held_status, held = await waiting

    assert (429, "TOO_MANY_CALLS_IN_FLIGHT", "1") == refused
    assert [("refused", 429, "TOO_MANY_CALLS_IN_FLIGHT")] == [
        (r["state"], r["status"], r["code"]) for r in batch["results"]]  # fmt: skip
    assert ((200, "success"), 1) == ((status, served["outcome"]), system.hits["ok"])
    assert (200, "success") == (held_status, held["outcome"])
