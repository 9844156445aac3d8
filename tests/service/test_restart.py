"""A restart of the service keeps what it was told and what it was doing.

Each test runs a service on a data directory, stops it (``running.stop()``: uvicorn's
graceful stop, then the runtime closes), starts a new one on the same directory and
looks again, through the API only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.loopback import System, until
from tests.service.conftest import WINDOW, Running, StartService
from tests.service.test_calls_api import call, deploy_throttling
from tests.service.test_service_e2e import ADOBE, deploy_capping, post

from sluicegate.outcomes import INTERRUPTED
from sluicegate.testing import FakeClock


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def restart(running: Running, start_service: StartService, data: Path,
                  clock: FakeClock) -> Running:  # fmt: skip
    await running.stop()
    return await start_service(data, clock=clock)


async def test_configs_keys_and_journeys_survive_a_restart(
    start_service: StartService, clock: FakeClock, system: System, data: Path
) -> None:
    """The same key still works, the journey keeps its timeout, and the deployed capping
    config is still listed as deployed and enforced."""
    service = await start_service(data, clock=clock)
    headers = await service.key()
    await service.request("PUT", "/v1/journeys/j", headers, {"timeoutSeconds": 5})
    await deploy_capping(service, headers, system.url("*"), 2, 1000)
    _, listed = await service.request("POST", f"{ADOBE}/list/endpointConfigs", headers, {})

    service = await restart(service, start_service, data, clock)
    assert (200, listed) == await service.request("POST", f"{ADOBE}/list/endpointConfigs",
                                                  headers, {})  # fmt: skip
    assert ["deployed"] == [config["state"] for config in listed["results"]]
    assert (200, {"journeyId": "j", "timeoutSeconds": 5}) == await service.request(
        "GET", "/v1/journeys/j", headers
    )
    outcomes = [(await post(service, headers, call(system, "ok")))["outcome"] for _ in range(3)]
    assert ["success", "success", "capped"] == outcomes


async def test_results_survive_a_restart(
    start_service: StartService, clock: FakeClock, system: System, data: Path
) -> None:
    """A finished call reads the same after a restart; its idempotency key still holds."""
    service = await start_service(data, clock=clock)
    headers = await service.key()
    body = await post(service, headers, call(system, "ok", idempotencyKey="k1"))

    service = await restart(service, start_service, data, clock)
    assert (200, body) == await service.request("GET", f"/v1/calls/{body['callId']}", headers)
    assert ((200, body), 1) == (
        await service.request("POST", "/v1/calls", headers,
                              call(system, "ok", idempotencyKey="k1")),
        system.hits["ok"],
    )  # fmt: skip


async def test_a_queued_call_runs_after_a_restart_and_gets_its_callback(
    start_service: StartService, clock: FakeClock, system: System, data: Path
) -> None:
    """A call queued by throttling when the service stops is delivered after it starts
    again, and the callback given with it arrives."""
    service = await start_service(data, clock=clock)
    headers = await service.key()
    await deploy_throttling(service, headers, system.url("call/*"), 200)
    fill = [call(system, f"call/{n}", waitSeconds=0) for n in range(200)]
    first = await asyncio.gather(*(post(service, headers, body) for body in fill))
    queued = await post(service, headers, call(system, "call/200", waitSeconds=0,
                                               callbackUrl=system.url("cb")))  # fmt: skip
    gate = service.runtime.gate
    await until(lambda: not any(gate.running(answer["callId"]) for answer in first))

    service = await restart(service, start_service, data, clock)
    await clock.advance(WINDOW)  # the window of the 200 sent before the stop survives it
    await until(lambda: len(system.callbacks) == 1)
    status, result = await service.request("GET", f"/v1/calls/{queued['callId']}", headers)
    assert ("queued", 200, "success", [200]) == (
        queued["state"], status, result["outcome"], system.delivered[200:]
    )  # fmt: skip
    assert result == system.callbacks[0][1]


async def test_a_call_running_at_a_stop_ends_as_interrupted(
    start_service: StartService, clock: FakeClock, system: System, data: Path
) -> None:
    """A call cut off by the stop (the system sees the client leave) ends network_error
    after the restart, saying why, and its callback says so too."""
    service = await start_service(data, clock=clock)
    headers = await service.key()
    running = await post(service, headers, call(system, "hold", waitSeconds=0,
                                                callbackUrl=system.url("cb")))  # fmt: skip
    await until(lambda: system.in_flight == 1)

    service = await restart(service, start_service, data, clock)
    # At least once: a callback sent while the service stopped may come again after it.
    await until(lambda: len(system.callbacks) >= 1)
    status, result = await service.request("GET", f"/v1/calls/{running['callId']}", headers)
    assert (1, 200, "network_error", "internalError", INTERRUPTED) == (
        system.disconnected, status, result["outcome"], result["joStatusCode"],
        result["error"]["message"],
    )  # fmt: skip
    assert [result] * len(system.callbacks) == [body for _, body in system.callbacks]


async def test_a_callback_cut_off_by_a_stop_is_sent_again(
    start_service: StartService, clock: FakeClock, system: System, data: Path
) -> None:
    """Callbacks are owed until delivered: one in flight at the stop is sent after the
    restart (delivery is at least once)."""
    service = await start_service(data, clock=clock)
    headers = await service.key()
    body = await post(service, headers, call(system, "ok", callbackUrl=system.url("heldcb")))
    await until(lambda: system.in_flight == 1)

    service = await restart(service, start_service, data, clock)
    await until(lambda: len(system.callbacks) == 1)
    assert (2, body) == (system.hits["heldcb"], system.callbacks[0][1])


# Report buckets across a restart: owned by the reports engineer (service/reports.py,
# buckets.py); their restart test belongs with them and is not written here.


async def test_a_queued_call_whose_result_was_lost_reads_as_interrupted(
    start_service: StartService, clock: FakeClock, data: Path
) -> None:
    """A call the service recorded as queued, which the engine no longer holds and whose
    result never reached the service (a crash between the two), reads network_error
    when asked for, saying nobody can tell what the external system received."""
    service = await start_service(data, clock=clock)
    headers = await service.key()
    row = ("0" * 32, "acme", "prod", "j", "queued", None, None, clock.now(), None, 0)
    await service.runtime.calls._db.execute(
        "a row left by a crash",
        "INSERT INTO calls (call_id, org, sandbox, journey, state, callback_url, "
        "idempotency_key, created_at, result, callback_due) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        row,
    )
    status, result = await service.request("GET", f"/v1/calls/{'0' * 32}", headers)
    assert (200, "network_error", INTERRUPTED) == (
        status, result["outcome"], result["error"]["message"]
    )  # fmt: skip
