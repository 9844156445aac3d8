"""``/v1/queues``: list an org's throttling queues, pause, resume and purge one.

The real service on loopback, on the test's clock, calls a real system on loopback; the
waits on ``until`` are for I/O only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.loopback import System, until
from tests.service.conftest import WINDOW, Running, StartService
from tests.service.test_calls_api import call
from tests.service.test_service_e2e import post

from sluicegate.testing import FakeClock

THROTTLING = "/journey/orchestration/throttlingConfigs"


async def throttled(service: Running, headers: dict[str, str], url: str) -> str:
    """Create and deploy the org's throttling config (200 calls per second); its uid."""
    payload = {"name": "t", "urlPattern": url, "methods": ["POST"], "maxThroughput": 200}
    status, created = await service.request("POST", THROTTLING, headers, payload)
    assert 200 == status, created
    assert (204, None) == await service.request("POST", f"{THROTTLING}/{created['uid']}/deploy",
                                                headers)  # fmt: skip
    return str(created["uid"])


async def step(service: Running, headers: dict[str, str], uid: str, what: str) -> Any:
    """POST ``/v1/queues/{uid}:{what}``, asserting 200; the queue it answers."""
    status, answer = await service.request("POST", f"/v1/queues/{uid}:{what}", headers)
    assert 200 == status, answer
    return answer


async def queued(service: Running, headers: dict[str, str], system: System, n: int,
                 **extra: Any) -> list[str]:  # fmt: skip
    """Make ``n`` calls to ``call/<i>`` that answer at once; their ids, each queued."""
    answers = [await post(service, headers, call(system, f"call/{i}", waitSeconds=0, **extra))
               for i in range(n)]  # fmt: skip
    assert {"queued"} == {answer["state"] for answer in answers}
    return [answer["callId"] for answer in answers]


async def test_a_paused_queue_keeps_calls_until_resumed(
    service: Running, clock: FakeClock, system: System
) -> None:
    """Paused, the queue takes every new call (none goes through its free window) and
    sends none; the list shows it paused with its calls; resumed, they are sent and end
    ``success``."""
    headers = await service.key()
    uid = await throttled(service, headers, system.url("call/*"))
    assert {"id": uid, "maxThroughput": 200, "paused": True, "depth": 0} == (
        await step(service, headers, uid, "pause")
    )
    ids = await queued(service, headers, system, 3)
    await clock.advance(3 * WINDOW)
    status, listed = await service.request("GET", "/v1/queues", headers)
    assert (200, [(uid, True, 3)], []) == (
        status, [(q["id"], q["paused"], q["depth"]) for q in listed["results"]],
        system.delivered,
    )  # fmt: skip
    assert round(3 * WINDOW, 3) == listed["results"][0]["oldestAgeSeconds"]
    assert (False, 3) == (lambda q: (q["paused"], q["depth"]))(
        await step(service, headers, uid, "resume")
    )
    await until(lambda: sorted(system.delivered) == [0, 1, 2])
    await until(lambda: not any(map(service.runtime.gate.running, ids)))
    for call_id in ids:
        status, result = await service.request("GET", f"/v1/calls/{call_id}", headers)
        assert (200, "success") == (status, result["outcome"])


async def test_a_purge_ends_each_waiting_call_expired_and_tells_its_callback(
    service: Running, clock: FakeClock, system: System
) -> None:
    """A purge answers how many calls it ended; each ends ``expired`` ("purged by an
    operator") without an attempt, its callback gets that result, and nothing is sent."""
    headers = await service.key()
    uid = await throttled(service, headers, system.url("call/*"))
    await step(service, headers, uid, "pause")
    ids = await queued(service, headers, system, 2, callbackUrl=system.url("cb"))
    answer = await step(service, headers, uid, "purge")
    assert (2, 0, True) == (answer["purged"], answer["depth"], answer["paused"])
    for call_id in ids:
        status, result = await service.request("GET", f"/v1/calls/{call_id}", headers)
        assert (200, "expired", "purged by an operator", 0) == (
            status, result["outcome"], result["error"]["message"], result["attempts"])  # fmt: skip
    await until(lambda: len(system.callbacks) == 2)
    assert set(ids) == {body["callId"] for _, body in system.callbacks}
    await step(service, headers, uid, "resume")
    await clock.advance(WINDOW)
    assert ([], 0) == (system.delivered, (await step(service, headers, uid, "purge"))["purged"])


async def test_a_queue_is_its_orgs_alone(service: Running, system: System) -> None:
    """Another org's key cannot see, pause, resume or purge a queue (404, as for an id
    that does not exist), nor can an id with a ``:`` reach one."""
    headers, other = await service.key(), await service.key(org="globex")
    uid = await throttled(service, headers, system.url("call/*"))
    await step(service, headers, uid, "pause")
    for what in ("pause", "resume", "purge"):
        for who, queue_id in ((other, uid), (headers, "nope"), (headers, f"x:{uid}")):
            status, answer = await service.request("POST", f"/v1/queues/{queue_id}:{what}", who)
            assert (404, "QUEUE_NOT_FOUND") == (status, answer["code"]), (what, queue_id)
    assert (200, {"results": []}) == await service.request("GET", "/v1/queues", other)
    status, listed = await service.request("GET", "/v1/queues", headers)
    assert [(uid, True)] == [(q["id"], q["paused"]) for q in listed["results"]]


async def test_reading_needs_a_reader_and_steering_an_editor(
    service: Running, system: System
) -> None:
    """A viewer lists queues but may not pause one; a caller may do neither; an editor
    pauses, resumes and purges."""
    uid = await throttled(service, await service.key(), system.url("call/*"))
    viewer, caller, editor = [await service.key(role=r) for r in ("viewer", "caller", "editor")]
    seen = [
        (await service.request("GET", "/v1/queues", viewer))[0],
        (await service.request("POST", f"/v1/queues/{uid}:pause", viewer))[0],
        (await service.request("GET", "/v1/queues", caller))[0],
        (await service.request("POST", f"/v1/queues/{uid}:purge", caller))[0],
    ]
    assert [200, 403, 403, 403] == seen
    for what in ("pause", "resume", "purge"):
        await step(service, editor, uid, what)


async def test_a_queue_outlives_its_config_while_it_holds_calls(
    service: Running, system: System
) -> None:
    """Its config deleted, a paused queue that holds calls is still listed, at its last
    rate, and can be purged; empty, it is gone."""
    headers = await service.key()
    uid = await throttled(service, headers, system.url("call/*"))
    await step(service, headers, uid, "pause")
    await queued(service, headers, system, 1)
    assert 204 == (await service.request("POST", f"{THROTTLING}/{uid}/undeploy", headers))[0]
    assert 200 == (await service.request("DELETE", f"{THROTTLING}/{uid}", headers))[0]
    status, listed = await service.request("GET", "/v1/queues", headers)
    assert (200, [(uid, 200, 1)]) == (
        status, [(q["id"], q["maxThroughput"], q["depth"]) for q in listed["results"]])  # fmt: skip
    assert 1 == (await step(service, headers, uid, "purge"))["purged"]
    await step(service, headers, uid, "resume")
    assert (200, {"results": []}) == await service.request("GET", "/v1/queues", headers)
    status, answer = await service.request("POST", f"/v1/queues/{uid}:pause", headers)
    assert (404, "QUEUE_NOT_FOUND") == (status, answer["code"])


async def test_a_pause_survives_a_restart(
    start_service: StartService, clock: FakeClock, system: System, tmp_path: Path
) -> None:
    """A queue paused when the service stops is still paused after it starts again: it
    holds its calls and queues new ones until resumed."""
    service = await start_service(tmp_path / "data", clock=clock)
    headers = await service.key()
    uid = await throttled(service, headers, system.url("call/*"))
    await step(service, headers, uid, "pause")
    await queued(service, headers, system, 1)
    await service.stop()

    service = await start_service(tmp_path / "data", clock=clock)
    await queued(service, headers, system, 1)
    await clock.advance(WINDOW)
    status, listed = await service.request("GET", "/v1/queues", headers)
    shown = [(q["paused"], q["depth"]) for q in listed["results"]]
    assert (200, [(True, 2)], []) == (status, shown, system.delivered)
    await step(service, headers, uid, "resume")
    await until(lambda: sorted(system.delivered) == [0, 0])
