"""The seeds' worked examples, end to end through the Gate on a fake clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from conftest import API, GUARD_MS, ORG, SANDBOX, capping, deploy, throttling
from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.outcomes import ErrorKind, Outcome
from sluicegate.testing import FakeClock, settle
from sluicegate.transport import Request, Response, Sending


def ok(_: Request) -> Response:
    return Response(status=200, body=b"{}")


def call_args(journey: str, path: str = "/v1/send", **extra: Any) -> dict[str, Any]:
    return {
        "org": ORG, "sandbox": SANDBOX, "journey": journey, "service": "action",
        "method": "POST", "url": f"{API}{path}", **extra,
    }  # fmt: skip


async def test_capping_slots_are_shared_by_all_journeys(open_gate: Any) -> None:
    """100/s shared by 10 journeys: one journey sending 200 takes the 100 slots, its other
    100 calls are capped, and the 9 other journeys get none."""
    gate, transport = await open_gate(ok)
    await deploy(gate, ConfigKind.CAPPING, capping(f"{API}/*", 100))
    busy = [gate.call(**call_args("j0")) for _ in range(200)]
    results = await asyncio.gather(*busy)
    others = await asyncio.gather(*(gate.call(**call_args(f"j{i}")) for i in range(1, 10)))
    assert {Outcome.SUCCESS: 100, Outcome.CAPPED: 100} == Counter(r.outcome for r in results)
    assert [Outcome.CAPPED] * 9 == [r.outcome for r in others]
    assert 100 == len(transport.requests)
    capped = next(r for r in results if r.outcome is Outcome.CAPPED)
    assert (0, "capped") == (capped.attempts, capped.jo_status_code)


async def offer(gate: Any, clock: FakeClock, interval: float, seconds: float) -> list[Any]:
    """Offer one call every ``interval`` for ``seconds``; each fails twice then succeeds."""
    tasks = []
    for tick in range(round(seconds / interval)):
        tasks.append(asyncio.create_task(gate.call(**call_args("j", f"/c/{tick}"))))
        await clock.advance(interval)
    await clock.advance(2.0)
    return [task.result() for task in tasks]


def fails_twice() -> Any:
    seen: Counter[str] = Counter()

    def handler(request: Request) -> Response:
        seen[request.url] += 1
        return Response(status=200 if seen[request.url] == 3 else 500)

    return handler


async def test_each_retry_takes_a_slot(open_gate: Any, clock: FakeClock) -> None:
    """A 100/s cap with two retries per call carries about 33 calls per second: 31/s all
    succeed with three slots each, and no offered load carries more than 34 in a second."""
    gate, _ = await open_gate(fails_twice())
    await deploy(gate, ConfigKind.CAPPING, capping(f"{API}/*", 100))
    steady = await offer(gate, clock, 0.032, 10)
    assert {(Outcome.SUCCESS, 3, 3)} == {(r.outcome, r.attempts, r.slots) for r in steady}

    gate, _ = await open_gate(fails_twice())
    await deploy(gate, ConfigKind.CAPPING, capping(f"{API}/*", 100))
    flooded = await offer(gate, clock, 0.025, 10)
    succeeded = [r for r in flooded if r.outcome is Outcome.SUCCESS]
    # 40 calls/s offered for 10 s; the slots they took all lie within 10.3 s, so at most
    # 11 windows of 100: at most 366 calls can have had their three slots each.
    assert sum(r.slots for r in flooded) <= 1100
    assert {3} == {r.slots for r in succeeded}
    assert 300 <= len(succeeded) <= 366
    assert Outcome.CAPPED in {r.outcome for r in flooded}


async def test_timeout_fast_success(open_gate: Any) -> None:
    """5 s timeout, first attempt answers at once: success with no retry."""
    gate, transport = await open_gate(ok)
    result = await gate.call(**call_args("j"), timeout_seconds=5)
    assert (Outcome.SUCCESS, 1, None) == (result.outcome, result.attempts, result.error)
    assert 1 == len(transport.requests)


async def test_a_request_the_budget_cut_off_before_it_left_is_no_attempt(
    clock: FakeClock,
) -> None:
    """A transport that has not started sending when the budget ends (still connecting,
    say, or a starved process): the call is timedout with no attempt, as the external
    system received nothing."""

    class NeverLeaves:
        async def send(self, request: Request, sending: Sending) -> Response:
            await asyncio.Event().wait()  # connecting, forever
            raise AssertionError("unreachable")

        async def aclose(self) -> None:
            return None

    async with Gate.open(clock=clock, transport=NeverLeaves()) as gate:
        task = asyncio.create_task(gate.call(**call_args("j"), timeout_seconds=5))
        await settle()
        await clock.advance(5)
        result = await task
    assert (Outcome.TIMEDOUT, 0, 0) == (result.outcome, result.attempts, result.slots)


async def test_first_attempt_over_budget_is_cancelled_not_retried(
    open_gate: Any, clock: FakeClock
) -> None:
    """5 s timeout, first attempt takes 6 s: cancelled at 5 s, never retried, timedout."""

    async def slow(_: Request) -> Response:
        await clock.sleep(6)
        return Response(status=200)

    gate, transport = await open_gate(slow)
    task = asyncio.create_task(gate.call(**call_args("j"), timeout_seconds=5))
    await clock.advance(4.999)
    assert not task.done()
    await clock.advance(0.001)
    result = task.result()
    assert (Outcome.TIMEDOUT, 1, "timedout") == (result.outcome, result.attempts,
                                                 result.jo_status_code)  # fmt: skip
    assert 5000.0 == result.execution_ms
    await clock.advance(10)
    assert 1 == len(transport.requests)


async def test_failure_at_two_seconds_then_retry_succeeds(open_gate: Any, clock: FakeClock) -> None:
    """5 s timeout, a 500 after 2 s: the 3 s left carry a retry that succeeds."""
    attempts: list[float] = []

    async def flaky(_: Request) -> Response:
        attempts.append(clock.now())
        if len(attempts) == 1:
            await clock.sleep(2)
            return Response(status=500)
        return Response(status=200)

    gate, _ = await open_gate(flaky)
    task = asyncio.create_task(gate.call(**call_args("j"), timeout_seconds=5))
    await clock.advance(5)
    result = task.result()
    assert (Outcome.SUCCESS, 2, 2) == (result.outcome, result.attempts, result.slots)
    assert [2.1] == [round(b - attempts[0], 3) for b in attempts[1:]]
    assert result.origin_error is not None
    assert 500 == result.origin_error.status


async def test_failure_at_two_seconds_then_retries_run_out_of_time(
    open_gate: Any, clock: FakeClock
) -> None:
    """5 s timeout, each attempt fails after 2 s: the budget ends during a retry,
    the call is timedout and its origin error is the 500 before it."""

    async def failing(_: Request) -> Response:
        await clock.sleep(2)
        return Response(status=500)

    gate, transport = await open_gate(failing)
    task = asyncio.create_task(gate.call(**call_args("j"), timeout_seconds=5))
    await clock.advance(5)
    result = task.result()
    assert (Outcome.TIMEDOUT, 3) == (result.outcome, result.attempts)
    assert result.error is not None
    assert ErrorKind.TIMEOUT is result.error.kind
    assert result.origin_error is not None
    assert 500 == result.origin_error.status
    assert 3 == len(transport.requests)


async def test_throttling_serves_in_arrival_order(open_gate: Any, clock: FakeClock) -> None:
    """Over the rate, calls wait and are dispatched in the order they arrived, never more
    than maxThroughput in any second."""
    sent: list[tuple[float, str]] = []

    def record(request: Request) -> Response:
        sent.append((clock.now(), request.url))
        return Response(status=200)

    gate, _ = await open_gate(record)
    await deploy(gate, ConfigKind.THROTTLING, throttling(f"{API}/*", 200))
    handles = [await gate.submit(**call_args("j", f"/n/{i}")) for i in range(700)]
    assert 500 == sum(h.state == "queued" for h in handles)
    for _ in range(4):
        await clock.advance(1.0)
    results = [await h.result() for h in handles]
    assert [f"{API}/n/{i}" for i in range(700)] == [url for _, url in sent]
    times = [t for t, _ in sent]
    assert max(sum(s <= t < s + 1 for t in times) for s in times) <= 200
    assert 0.0 == results[0].queued_ms
    assert 3 * (1000 + GUARD_MS) == round(results[-1].queued_ms)  # three windows later


async def test_budget_starts_after_the_queue(open_gate: Any, clock: FakeClock) -> None:
    """Time queued by throttling does not count against the journey's timeout."""
    gate, _ = await open_gate(ok)
    await deploy(gate, ConfigKind.THROTTLING, throttling(f"{API}/*", 200))
    handles = [await gate.submit(**call_args("j"), timeout_seconds=1) for _ in range(600)]
    await clock.run_until(handles[-1].result(), step=0.5, limit=10)
    last = await handles[-1].result()
    assert (Outcome.SUCCESS, 2 * (1000 + GUARD_MS)) == (last.outcome, round(last.queued_ms))


async def test_undeploy_drains_queued_calls_at_the_last_rate(
    open_gate: Any, clock: FakeClock
) -> None:
    """After undeploy, new calls are no longer throttled and those already queued still
    drain at the last deployed rate."""
    sent: list[tuple[float, str]] = []

    def record(request: Request) -> Response:
        sent.append((clock.now(), request.url))
        return Response(status=200)

    gate, _ = await open_gate(record)
    uid = await deploy(gate, ConfigKind.THROTTLING, throttling(f"{API}/*", 200))
    queued = [await gate.submit(**call_args("j", f"/q/{i}")) for i in range(600)]
    await gate.rules.undeploy(ConfigKind.THROTTLING, org=ORG, sandbox=SANDBOX, uid=uid)
    fresh = await gate.call(**call_args("j", "/fresh"))
    assert (Outcome.SUCCESS, 0.0) == (fresh.outcome, fresh.queued_ms)
    await clock.advance(1 + GUARD_MS / 1000)
    assert 401 == len(sent)
    await clock.advance(1 + GUARD_MS / 1000)
    assert {Outcome.SUCCESS} == {(await h.result()).outcome for h in queued}
    assert 601 == len(sent)


async def test_throttling_then_capping_on_one_endpoint(open_gate: Any, clock: FakeClock) -> None:
    """A call first waits for its throttling slot, then needs a capping slot or is capped."""
    gate, transport = await open_gate(ok)
    await deploy(gate, ConfigKind.THROTTLING, throttling(f"{API}/*", 200))
    await deploy(gate, ConfigKind.CAPPING, capping(f"{API}/*", 250, 2000))
    handles = [await gate.submit(**call_args("j")) for _ in range(300)]
    await clock.advance(1 + GUARD_MS / 1000)
    outcomes = Counter([(await h.result()).outcome for h in handles])
    assert {Outcome.SUCCESS: 250, Outcome.CAPPED: 50} == outcomes
    assert 250 == len(transport.requests)


async def test_blocked_url_makes_no_attempt(open_gate: Any) -> None:
    """A URL the egress policy refuses ends blocked without any attempt."""
    gate, transport = await open_gate(ok)
    result = await gate.call(**call_args("j") | {"url": "http://10.0.0.8/x"})
    assert (Outcome.BLOCKED, 0, "internalError") == (result.outcome, result.attempts,
                                                     result.jo_status_code)  # fmt: skip
    assert [] == transport.requests


async def test_every_outcome_is_counted(open_gate: Any) -> None:
    """Reporting counts each call once, per journey, endpoint and outcome."""
    gate, _ = await open_gate(ok)
    await deploy(gate, ConfigKind.CAPPING, capping(f"{API}/*", 2))
    for _ in range(3):
        await gate.call(**call_args("j"))
    await settle()
    assert {Outcome.SUCCESS: 2, Outcome.CAPPED: 1} == gate.counters.outcomes(journey="j")
    assert 2 == gate.counters.total(journey="j").attempts
