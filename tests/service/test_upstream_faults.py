"""External systems that misbehave, as the orchestrator sees them through the service.

An external system can fail in ways a well-behaved HTTP server never shows: it takes the
request and never answers, resets the connection, drips its body a byte at a time, sends
its status line a byte at a time, or streams a body of gigabytes. Each test serves one of
those, byte by byte, from a raw TCP server on loopback (``tests/faulty.py``), calls it with
``POST /v1/calls`` of the real service on the default (aiohttp) transport, and checks what
the contract promises (``docs/api-calls.md``, ``docs/engine.md``):

* every call ends, with one clear outcome, within its journey's budget (``timedout`` when
  the budget runs out during an attempt; ``network_error`` after the 3 retries of a
  connection that fails), and its result reads the same with ``GET /v1/calls/{id}``;
* the attempts the result reports are the requests the system received (no hidden
  re-send, no more than 1 + 3 retries), and a cancelled attempt's connection is closed;
* a body over the size cap (1 MiB) is cut while it is read (``truncated``), the
  connection closed long before the system could send it all, and the service stays well.

The budget runs on the test's FakeClock: a test moves the clock to the deadline rather
than waiting for it, and ``until`` waits only for real I/O.
"""

from __future__ import annotations

import asyncio
import base64
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from tests.faulty import (
    MIB,
    Behaviour,
    answer_then,
    drip,
    flood,
    hang,
    hang_up,
    inflating,
    reset,
    serve_faulty,
    slow_head,
    status,
)
from tests.loopback import System, until
from tests.service.conftest import Running, StartService

from sluicegate.settings import Settings
from sluicegate.testing import FakeClock

#: The budget of a journey that declares none (``timeoutSeconds`` defaults to 30).
BUDGET = 30.0
#: Longer than any budget, so that the POST answers with the outcome.
WAIT = 60
#: Real seconds a call may take to end once its end is due: it must end, not hang.
PROMPT = 10.0


@pytest.fixture
async def service(start_service: StartService, clock: FakeClock) -> Running:
    """The service on the test's clock, on the aiohttp transport (named: it is the default,
    and the one whose cancelled attempts close their connection)."""
    return await start_service(clock=clock, settings=Settings(allow_loopback=True,
                                                              transport="aiohttp"))  # fmt: skip


def call(url: str) -> dict[str, Any]:
    """A POST /v1/calls body: a custom action of a journey with the default budget."""
    return {"journeyId": "faulty", "service": "action", "waitSeconds": WAIT,
            "request": {"method": "POST", "url": url, "body": {"n": 1}}}  # fmt: skip


@asynccontextmanager
async def posting(
    service: Running, headers: dict[str, str], body: dict[str, Any]
) -> AsyncIterator[asyncio.Task[tuple[int, Any]]]:
    """``POST /v1/calls`` running in a task for the block; cancelled if the block leaves
    it unfinished, so that a test that fails never leaves the service waiting to answer."""
    task = asyncio.create_task(service.request("POST", "/v1/calls", headers, body))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def answer(task: asyncio.Task[tuple[int, Any]]) -> dict[str, Any]:
    """The result view the POST answered with, which must come promptly and be a 200."""
    async with asyncio.timeout(PROMPT):
        code, body = await task
    assert 200 == code, body
    result: dict[str, Any] = body
    return result


async def read_back(service: Running, headers: dict[str, str], call_id: str) -> Any:
    """The result view ``GET /v1/calls/{call_id}`` reads, which must be a 200."""
    status_code, body = await service.request("GET", f"/v1/calls/{call_id}", headers)
    assert 200 == status_code, body
    return body


async def step_until(clock: FakeClock, done: Callable[[], bool], step: float = 0.05) -> None:
    """Move the clock ``step`` at a time, letting real I/O happen in between, until
    ``done()``; never as far as the budget. A step shorter than the shortest retry wait
    fires at most one retry per step."""
    moved = 0.0
    while not done():
        assert moved < BUDGET / 2, "the condition never came while the clock moved"
        await clock.advance(step)
        moved += step
        await asyncio.sleep(0.005)


def body_bytes(response: dict[str, Any]) -> bytes:
    """The bytes of a response view's body. (Zeros are valid UTF-8: the view may render
    them as ``text`` although the system said ``application/octet-stream``.)"""
    match response["encoding"]:
        case "base64":
            return base64.b64decode(response["body"])
        case "text":
            text: str = response["body"]
            return text.encode()
    raise AssertionError(f"a body of zeros rendered as {response['encoding']}")


def summary(result: dict[str, Any]) -> tuple[Any, ...]:
    """What every faulty call is judged on first: how it ended, and what it sent."""
    error = result["error"] or {}
    return (result["outcome"], result["joStatusCode"], error.get("kind"), result["attempts"],
            result["retries"], result["response"])  # fmt: skip


async def test_a_system_that_never_answers_ends_timedout_at_the_budget(
    service: Running, clock: FakeClock
) -> None:
    """A system that reads the request and never answers: the call runs until its budget
    ends, not a moment less, then ends ``timedout`` after its one attempt (a first attempt
    that outlasts the budget is not retried); the connection is closed, and the result
    reads the same with GET."""
    headers = await service.key(role="caller")
    async with (
        serve_faulty(hang) as upstream,
        posting(service, headers, call(upstream.url())) as posted,
    ):
        await until(lambda: upstream.requests == 1)
        await clock.advance(BUDGET - 0.5)
        await asyncio.sleep(0.05)  # time for anything that would end it early
        running = (posted.done(), upstream.gone)
        await clock.advance(0.5)
        result = await answer(posted)
        await until(lambda: upstream.gone == 1)

    assert (False, 0) == running
    assert ("timedout", "timedout", "timedout", 1, 0, None) == summary(result)
    assert (BUDGET * 1000, 1, 1) == (
        result["executionMs"], upstream.connections, upstream.requests)  # fmt: skip
    assert result == await read_back(service, headers, result["callId"])


async def test_a_system_that_fails_then_hangs_counts_both_attempts(
    service: Running, clock: FakeClock
) -> None:
    """A 500, then a retry that hangs: the call ends ``timedout`` at the budget with the 500
    as its origin error, and reports the 2 attempts the system received, on 2 connections."""
    headers = await service.key(role="caller")
    behaviour = answer_then(lambda hit: status(500, "Boom") if hit == 1 else None, hang)
    async with (
        serve_faulty(behaviour) as upstream,
        posting(service, headers, call(upstream.url())) as posted,
    ):
        await until(lambda: upstream.requests == 1)
        started = clock.now()  # the budget's start: the clock has not moved since the call's
        await step_until(clock, lambda: upstream.requests == 2)
        await clock.advance(started + BUDGET - clock.now() + 0.001)
        result = await answer(posted)
        await until(lambda: upstream.gone == 1)

    assert ("timedout", "timedout", "timedout", 2, 1, None) == summary(result)
    assert ({"kind": "http", "message": "HTTP 500", "status": 500}, 2, 2) == (
        result["originError"], upstream.requests, upstream.connections)  # fmt: skip
    assert BUDGET * 1000 == pytest.approx(result["executionMs"], abs=1)
    assert result == await read_back(service, headers, result["callId"])


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [(reset, "connection reset by peer"),
     (hang_up, "server closed the connection without a response")],
    ids=["rst", "fin"],
)  # fmt: skip
async def test_a_system_that_drops_every_connection_ends_network_error_after_3_retries(
    service: Running, clock: FakeClock, behaviour: Behaviour, message: str
) -> None:
    """A system that reads each request and drops the connection without a response
    (with RST, or with FIN): the call is retried 3 times, waiting its schedule (100, 200,
    400 ms) in between, and ends ``network_error``; the system received exactly the 4
    attempts the result reports, each on a connection of its own, and no more come."""
    headers = await service.key(role="caller")
    async with (
        serve_faulty(behaviour) as upstream,
        posting(service, headers, call(upstream.url())) as posted,
    ):
        await step_until(clock, posted.done)
        result = await answer(posted)
        await clock.advance(BUDGET)  # any retry still to come would be sent by now
        await asyncio.sleep(0.05)

    assert ("network_error", "internalError", "error", 4, 3, None) == summary(result)
    assert (message, 4, 4) == (
        result["error"]["message"], upstream.connections, upstream.requests)  # fmt: skip
    assert 100 + 200 + 400 <= result["executionMs"] + 0.001 < BUDGET * 1000
    assert result == await read_back(service, headers, result["callId"])


async def test_a_body_dripped_a_byte_at_a_time_ends_timedout_at_the_budget(
    service: Running, clock: FakeClock
) -> None:
    """A system that answers its head at once, then a 1,000-byte body one byte a second:
    bytes keep coming, but the call ends ``timedout`` when its budget ends rather than
    waiting the 1,000 s of the drip, and the connection is closed with the body unfinished."""
    headers = await service.key(role="caller")
    async with (
        serve_faulty(drip(clock, length=1000, every=1.0)) as upstream,
        posting(service, headers, call(upstream.url())) as posted,
    ):
        await until(lambda: upstream.requests == 1)
        await clock.advance(BUDGET)
        result = await answer(posted)
        await until(lambda: upstream.gone == 1)

    assert ("timedout", "timedout", "timedout", 1, 0, None) == summary(result)
    assert (BUDGET * 1000, 1, 1) == (
        result["executionMs"], upstream.connections, upstream.requests)  # fmt: skip
    assert 0 < upstream.body_sent <= BUDGET
    assert result == await read_back(service, headers, result["callId"])


async def test_a_status_line_sent_a_byte_at_a_time_ends_timedout_at_the_budget(
    service: Running, clock: FakeClock
) -> None:
    """A system that sends its status line one byte every 2 s (17 bytes: 34 s): the call
    ends ``timedout`` at its budget, before the status line is even whole, after one
    attempt, and the connection is closed."""
    headers = await service.key(role="caller")
    status_line = len(b"HTTP/1.1 200 OK\r\n")
    async with (
        serve_faulty(slow_head(clock, every=2.0)) as upstream,
        posting(service, headers, call(upstream.url())) as posted,
    ):
        await until(lambda: upstream.requests == 1)
        await clock.advance(BUDGET)
        result = await answer(posted)
        await until(lambda: upstream.gone == 1)

    assert ("timedout", "timedout", "timedout", 1, 0, None) == summary(result)
    assert (BUDGET * 1000, 1, 1) == (
        result["executionMs"], upstream.connections, upstream.requests)  # fmt: skip
    assert 0 < upstream.sent < status_line
    assert result == await read_back(service, headers, result["callId"])


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_2_gib_body_is_cut_at_the_cap_and_the_connection_closed(
    service: Running, system: System, chunked: bool
) -> None:
    """A 200 whose body is 2 GiB of zeros (declared by Content-Length, or chunked without
    a length), sent as fast as the socket takes it: the engine reads 1 MiB (the default
    ``max_response_bytes``) and closes the connection. The call is a ``success`` whose
    body is that first MiB, ``truncated``; the system wrote far less than 2 GiB before the
    connection closed; and the service goes on serving calls."""
    assert MIB == Settings().max_response_bytes
    headers = await service.key(role="caller")
    async with (
        serve_faulty(flood(chunked=chunked)) as upstream,
        posting(service, headers, call(upstream.url())) as posted,
    ):
        result = await answer(posted)
        await until(lambda: upstream.finished == 1)

    response = result["response"]
    body = body_bytes(response)
    assert ("success", None, None, 1, 0) == summary(result)[:5]
    assert (200, True, MIB, True) == (
        response["status"], response["truncated"], len(body), body == bytes(MIB))  # fmt: skip
    assert (1, 1) == (upstream.connections, upstream.requests)
    assert upstream.body_sent < 64 * MIB
    assert result == await read_back(service, headers, result["callId"])

    after = await service.request("POST", "/v1/calls", headers, call(system.url("ok")))
    ready = await service.request("GET", "/readyz", {})
    assert ((200, "success", {"path": "ok"}), 200) == (
        (after[0], after[1]["outcome"], after[1]["response"]["body"]), ready[0])  # fmt: skip


async def test_a_gzip_body_that_inflates_to_2_gib_is_cut_at_the_cap(
    service: Running, system: System
) -> None:
    """A 200 of 2 MiB on the wire whose ``Content-Encoding: gzip`` inflates to 2 GiB of
    zeros: the engine inflates only what it keeps (the call is a ``success`` with the first
    MiB, ``truncated``), never the whole body in memory, and goes on serving calls."""
    headers = await service.key(role="caller")
    tracemalloc.start()
    try:
        async with (
            serve_faulty(inflating()) as upstream,
            posting(service, headers, call(upstream.url())) as posted,
        ):
            result = await answer(posted)
            await until(lambda: upstream.finished == 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    response = result["response"]
    body = body_bytes(response)
    assert ("success", None, None, 1, 0) == summary(result)[:5]
    assert (200, True, MIB, True) == (
        response["status"], response["truncated"], len(body), body == bytes(MIB))  # fmt: skip
    assert (1, 1) == (upstream.connections, upstream.requests)
    assert peak < 256 * MIB, f"{peak / MIB:.0f} MiB allocated at the peak"

    after = await service.request("POST", "/v1/calls", headers, call(system.url("ok")))
    assert (200, "success") == (after[0], after[1]["outcome"])
