"""``POST /v1/calls:batch`` over real HTTP: many calls in one request, each answered alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.loopback import System, eventually, until
from tests.service.conftest import WINDOW, Running
from tests.service.test_calls_api import call, deploy_throttling, get

from sluicegate.service.routes.call_models import MAX_BATCH, BatchOut
from sluicegate.testing import FakeClock


async def batch(
    service: Running, headers: dict[str, str], calls: list[dict[str, Any]], **extra: Any
) -> tuple[int, Any]:
    return await service.request("POST", "/v1/calls:batch", headers, {"calls": calls} | extra)


async def test_each_call_is_answered_in_order_and_an_invalid_one_alone(
    service: Running, system: System
) -> None:
    """Valid calls run and answer their result views, in the batch's order; an invalid
    call is refused with its code while the others run; each is found by its id later."""
    headers = await service.key(role="caller")
    calls = [
        call(system, "ok"),
        call(system, "ok", request={"url": "/relative"}),
        call(system, "ok", colour="blue"),
        call(system, "missing"),
    ]
    status, body = await batch(service, headers, calls)
    results = body["results"]
    BatchOut.model_validate(body)
    refused = [(r["state"], r["status"], r["code"]) for r in results[1:3]]
    assert (200, ["done", "refused", "refused", "done"]) == (status, [r["state"] for r in results])
    assert [("refused", 400, "INVALID_URL"), ("refused", 400, "INVALID_REQUEST")] == refused
    assert ["success", "http_error"] == [results[0]["outcome"], results[3]["outcome"]]
    assert {"ok": 1, "missing": 1} == system.hits
    for result in (results[0], results[3]):
        assert (200, result) == await get(service, headers, result["callId"])


async def test_a_batch_waits_up_to_wait_seconds_for_every_call_and_cuts_none(
    service: Running, system: System, clock: FakeClock
) -> None:
    """A batch answers once all its calls ended or ``waitSeconds`` passed: a call still
    held then reads ``running``, keeps running, and its result is found by its id later."""
    headers = await service.key()
    calls = [call(system, "ok"), call(system, "hold"), call(system, "ok")]
    answered = asyncio.create_task(batch(service, headers, calls, waitSeconds=5))
    await until(lambda: system.in_flight == 1 and system.hits.get("ok") == 2)
    await clock.advance(4.9)
    assert not answered.done()
    await clock.advance(0.1)
    status, body = await answered
    results = body["results"]
    assert (200, ["done", "running", "done"]) == (status, [r["state"] for r in results])
    system.release.release()
    held = results[1]["callId"]

    async def ended() -> bool:
        return 200 == (await get(service, headers, held))[0]

    await eventually(ended)
    assert ("success", 0) == ((await get(service, headers, held))[1]["outcome"],
                              system.disconnected)  # fmt: skip


async def test_calls_over_the_rate_are_queued_in_the_batch_order(
    service: Running, system: System, clock: FakeClock
) -> None:
    """Behind a 200/s throttling rule, a batch of 450 runs 200 at once and queues 250: a
    window later the next 200 of the batch leave, the last 50 in the window after."""
    headers = await service.key()
    await deploy_throttling(service, headers, system.url("call/*"), 200)
    calls = [call(system, f"call/{n}") for n in range(450)]
    status, body = await batch(service, headers, calls, waitSeconds=0)
    states = [r["state"] for r in body["results"]]
    assert (200, ["queued"] * 250) == (status, states[200:])
    await until(lambda: len(system.delivered) == 200)

    await clock.advance(WINDOW)
    await until(lambda: len(system.delivered) == 400)
    await clock.advance(WINDOW)
    await until(lambda: len(system.delivered) == 450)
    assert list(range(200, 400)) == sorted(system.delivered[200:400])
    assert list(range(400, 450)) == sorted(system.delivered[400:])


async def test_an_idempotency_key_answers_its_first_call_within_and_across_batches(
    service: Running, system: System
) -> None:
    """The same key twice in a batch, and again in a later one: one call, one id."""
    headers = await service.key()
    keyed = call(system, "ok", idempotencyKey="order-1")
    _, first = await batch(service, headers, [keyed, keyed, call(system, "ok")])
    _, again = await batch(service, headers, [keyed])
    ids = [r["callId"] for r in (*first["results"][:2], again["results"][0])]
    assert (1, 2) == (len(set(ids)), system.hits["ok"])
    assert ["done"] * 3 == [r["state"] for r in (*first["results"][:2], again["results"][0])]


async def test_the_batch_callback_url_serves_calls_without_their_own(
    service: Running, system: System
) -> None:
    """``callbackUrl`` of the batch is the callback of each call that names none."""
    headers = await service.key()
    calls = [call(system, "ok"), call(system, "ok", callbackUrl=system.url("nowhere"))]
    _, body = await batch(service, headers, calls, callbackUrl=system.url("cb"))
    await until(lambda: len(system.callbacks) == 1)
    assert body["results"][0]["callId"] == system.callbacks[0][1]["callId"]
    await until(lambda: system.hits.get("nowhere") == 1)


@pytest.mark.parametrize("count", [0, MAX_BATCH + 1])
async def test_an_empty_or_oversized_batch_is_refused_whole(
    service: Running, system: System, count: int
) -> None:
    """No call, or more than MAX_BATCH: 400 for the request, and nothing is called."""
    headers = await service.key()
    status, problem = await batch(service, headers, [call(system, "ok")] * count)
    assert (400, "INVALID_REQUEST", {}) == (status, problem["code"], system.hits)
