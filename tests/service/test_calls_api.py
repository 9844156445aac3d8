"""``/v1/calls`` over real HTTP: one request runs a guarded call against a loopback system.

The service runs on a FakeClock, so call times read 0 ms unless a test moves the clock,
and no test waits for time to pass; ``until``/``eventually`` wait for real I/O only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.loopback import System, eventually, until
from tests.service.conftest import WINDOW, Running, StartService

from sluicegate.service.callbacks import CALL_ID_HEADER
from sluicegate.service.routes.call_models import CallPending, CallView
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock


def call(system: System, path: str, **extra: Any) -> dict[str, Any]:
    """A POST /v1/calls body for a custom action POSTing to ``path`` of ``system``."""
    request = {"method": "POST", "url": system.url(path)} | extra.pop("request", {})
    return {"journeyId": "welcome", "service": "action", "request": request} | extra


async def get(service: Running, headers: dict[str, str], call_id: str) -> tuple[int, Any]:
    return await service.request("GET", f"/v1/calls/{call_id}", headers)


async def test_a_call_that_ends_answers_200_with_its_whole_result(
    service: Running, system: System
) -> None:
    """A call that ends within waitSeconds answers 200 with every field of the result."""
    headers = await service.key(role="caller")
    status, body = await service.request("POST", "/v1/calls", headers, call(system, "ok"))

    response_headers = body["response"].pop("headers")
    content_type = response_headers["Content-Type"].split(";")[0]
    assert ("1", "application/json") == (response_headers["X-Seen"], content_type)
    assert (200, {
        "callId": body["callId"], "state": "done", "outcome": "success", "joStatusCode": None,
        "attempts": 1, "retries": 0, "slots": 1, "queuedMs": 0.0, "executionMs": 0.0,
        "response": {"status": 200, "body": {"path": "ok"}, "encoding": "json",
                     "truncated": False},
        "error": None, "originError": None,
    }) == (status, body)  # fmt: skip
    assert (200, body | {"response": body["response"] | {"headers": response_headers}}) == (
        await get(service, headers, body["callId"])
    )
    CallView.model_validate((await get(service, headers, body["callId"]))[1])


async def test_a_call_not_ended_answers_202_and_get_gives_the_result_later(
    service: Running, system: System
) -> None:
    """waitSeconds 0 on a held request: 202 running; GET says running, then 200 once done."""
    headers = await service.key()
    status, body = await service.request(
        "POST", "/v1/calls", headers, call(system, "hold", waitSeconds=0)
    )
    call_id = body["callId"]
    assert (202, {"callId": call_id, "state": "running"}) == (status, body)
    CallPending.model_validate(body)
    await until(lambda: system.in_flight == 1)
    assert (202, {"callId": call_id, "state": "running"}) == await get(service, headers, call_id)

    system.release.release()

    async def done() -> bool:
        return 200 == (await get(service, headers, call_id))[0]

    await eventually(done)
    status, result = await get(service, headers, call_id)
    assert ("success", {"path": "hold"}) == (result["outcome"], result["response"]["body"])


async def test_the_same_idempotency_key_returns_the_first_call(
    service: Running, system: System
) -> None:
    """A key used twice within 24 h: one request reaches the system, both answers name the
    first call; while the first call runs, the repeat answers 202 with its id."""
    headers = await service.key()
    first = await service.request("POST", "/v1/calls", headers,
                                  call(system, "ok", idempotencyKey="order-1"))  # fmt: skip
    again = await service.request("POST", "/v1/calls", headers,
                                  call(system, "ok", idempotencyKey="order-1"))  # fmt: skip
    assert (first, 1) == (again, system.hits["ok"])

    hold = call(system, "hold", waitSeconds=0, idempotencyKey="o-2")
    held = await service.request("POST", "/v1/calls", headers, hold)
    repeat = await service.request("POST", "/v1/calls", headers, hold)
    await until(lambda: system.in_flight == 1)
    assert (held, 1) == (repeat, system.hits["hold"])


async def test_an_idempotency_key_counts_for_24_hours(
    service: Running, system: System, clock: FakeClock
) -> None:
    """A key is honoured until 24 h after its first call; after that it makes a new call."""
    headers = await service.key()
    body = call(system, "ok", idempotencyKey="daily")
    first = (await service.request("POST", "/v1/calls", headers, body))[1]["callId"]
    await clock.advance(24 * 3600 - 1)
    same_day = (await service.request("POST", "/v1/calls", headers, body))[1]["callId"]
    await clock.advance(2)
    next_day = (await service.request("POST", "/v1/calls", headers, body))[1]["callId"]
    assert (first, 2) == (same_day, system.hits["ok"])
    assert first != next_day


async def test_idempotency_keys_belong_to_their_sandbox(service: Running, system: System) -> None:
    """The same key in another sandbox, or another org, is another call."""
    admin = await service.key()
    await service.request("POST", "/v1/sandboxes", admin, {"name": "dev", "type": "development"})
    calls = [call(system, "ok", idempotencyKey="k")] * 3
    ids = set()
    for headers, body in zip(
        [admin, await service.key(sandbox="dev"), await service.key(org="other")],
        calls,
        strict=True,
    ):
        ids.add((await service.request("POST", "/v1/calls", headers, body))[1]["callId"])
    assert (3, 3) == (len(ids), system.hits["ok"])


async def test_a_string_body_is_sent_as_is_and_json_as_json(
    service: Running, system: System
) -> None:
    """A string body goes out unchanged with its own Content-Type; any other JSON value is
    serialized, with Content-Type application/json."""
    headers = await service.key()
    raw = call(system, "echo", request={"body": "a=1&b=2",
                                        "headers": {"Content-Type": "text/plain"}})  # fmt: skip
    as_json = call(system, "echo", request={"body": {"a": [1, 2], "b": None}})
    answers = [(await service.request("POST", "/v1/calls", headers, b))[1] for b in (raw, as_json)]

    assert [
        {"body": "a=1&b=2", "contentType": "text/plain"},
        {"body": '{"a":[1,2],"b":null}', "contentType": "application/json"},
    ] == [answer["response"]["body"] for answer in answers]


async def test_response_bodies_are_json_text_or_base64(service: Running, system: System) -> None:
    """JSON bodies come decoded, text as a string, bytes that are not text as base64."""
    headers = await service.key()
    seen = []
    for path in ("ok", "text", "binary"):
        answer = (await service.request("POST", "/v1/calls", headers, call(system, path)))[1]
        seen.append((answer["response"]["encoding"], answer["response"]["body"]))
    assert [("json", {"path": "ok"}), ("text", "héllo"), ("base64", "AP8=")] == seen


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"service": "webhook"}, "INVALID_SERVICE"),
        ({"request": {"method": "POST", "url": "http://exa mple.org:port/x"}}, "INVALID_URL"),
        ({"request": {"method": "POST", "url": "/relative"}}, "INVALID_URL"),
        ({"request": {"method": "FETCH", "url": "http://example.org/"}}, "INVALID_METHOD"),
        ({"waitSeconds": 61}, "INVALID_REQUEST"),
        ({"waitSeconds": -1}, "INVALID_REQUEST"),
        ({"journeyId": None}, "INVALID_REQUEST"),
        ({"callbackUrl": "not a url"}, "INVALID_CALLBACK_URL"),
        ({"callbackUrl": "ftp://example.org/cb"}, "INVALID_CALLBACK_URL"),
        (
            {"request": {"method": "GET", "url": "http://x/", "headers": {"a b": "c"}}},
            "INVALID_HEADER",
        ),
        ({"extra": 1}, "INVALID_REQUEST"),
    ],
)
async def test_bad_input_is_400_with_a_code(
    service: Running, system: System, change: dict[str, Any], code: str
) -> None:
    """Invalid calls answer 400 with a stable code, and nothing reaches the system."""
    headers = await service.key()
    body = {k: v for k, v in (call(system, "ok") | change).items() if v is not None}
    status, problem = await service.request("POST", "/v1/calls", headers, body)
    assert (400, code, {}) == (status, problem["code"], system.hits)


async def test_a_callback_gets_the_result_view(service: Running, system: System) -> None:
    """A call with a callbackUrl POSTs its result view there once it ended."""
    headers = await service.key()
    status, body = await service.request(
        "POST", "/v1/calls", headers, call(system, "ok", callbackUrl=system.url("cb"))
    )
    await until(lambda: len(system.callbacks) == 1)
    received_headers, payload = system.callbacks[0]
    assert (200, body, body["callId"]) == (status, payload, received_headers[CALL_ID_HEADER])
    await until(lambda: {"delivered": 1, "failed": 0, "refused": 0}
                == service.runtime.calls.callback_counts)  # fmt: skip


async def test_a_failed_callback_is_retried(
    service: Running, system: System, clock: FakeClock
) -> None:
    """A callback answered 500 is sent again after its retry delay (1 s), and delivered."""
    headers = await service.key()
    _, body = await service.request(
        "POST", "/v1/calls", headers, call(system, "ok", callbackUrl=system.url("flakycb"))
    )
    await until(lambda: system.hits.get("flakycb") == 1)
    async with asyncio.timeout(5):
        while not system.callbacks:  # the retry's timer is set once the 500 is read: step on
            await clock.advance(0.25)
            await asyncio.sleep(0.001)  # let that I/O happen
    await until(lambda: service.runtime.calls.callback_counts["delivered"] == 1)
    assert (2, body) == (system.hits["flakycb"], system.callbacks[0][1])


async def test_a_queued_call_gets_its_callback_when_it_ends(
    service: Running, system: System, clock: FakeClock
) -> None:
    """Over a 200/s throttling rule, the 201st call is queued (202); when its turn comes a
    window later, it runs and its callback arrives."""
    headers = await service.key()
    await deploy_throttling(service, headers, system.url("call/*"), 200)
    first = await asyncio.gather(*(
        service.request("POST", "/v1/calls", headers, call(system, f"call/{n}", waitSeconds=0))
        for n in range(200)))  # fmt: skip
    status, queued = await service.request("POST", "/v1/calls", headers, call(
        system, "call/200", waitSeconds=0, callbackUrl=system.url("cb")))  # fmt: skip
    assert ({202}, (202, "queued")) == ({s for s, _ in first}, (status, queued["state"]))
    await until(lambda: len(system.delivered) == 200)

    await clock.advance(WINDOW)
    await until(lambda: len(system.callbacks) == 1)
    payload = system.callbacks[0][1]
    assert (queued["callId"], "success", WINDOW * 1000) == (
        payload["callId"],
        payload["outcome"],
        payload["queuedMs"],
    )


async def test_a_callback_the_egress_policy_refuses_is_counted(
    start_service: StartService, clock: FakeClock, system: System
) -> None:
    """A callback host resolving to a refused address (here loopback, outside development
    mode) is not called; the refusal is counted and the call's result is unchanged."""
    port = int(system.base.rsplit(":", 1)[1])
    settings = Settings(allowed_hosts=frozenset({"127.0.0.1"}), allowed_ports=frozenset({port}))
    service = await start_service(clock=clock, settings=settings, dev=False)
    headers = await service.key()
    status, body = await service.request("POST", "/v1/calls", headers, call(
        system, "ok", callbackUrl=f"http://localhost:{port}/cb"))  # fmt: skip
    await until(lambda: service.runtime.calls.callback_counts.get("refused") == 1)
    assert (200, "success", []) == (status, body["outcome"], system.callbacks)


async def test_results_are_kept_7_days(service: Running, system: System, clock: FakeClock) -> None:
    """A result is readable for 7 days, and gone within the hour after (pruning runs with
    the writes, at most hourly)."""
    headers = await service.key()
    old = (await service.request("POST", "/v1/calls", headers, call(system, "ok")))[1]["callId"]
    await clock.advance(7 * 24 * 3600 - 1)
    assert 200 == (await get(service, headers, old))[0]
    await clock.advance(3600 + 2)
    await service.request("POST", "/v1/calls", headers, call(system, "ok"))

    async def gone() -> bool:
        return 404 == (await get(service, headers, old))[0]

    await eventually(gone)


async def test_calls_of_another_org_or_sandbox_are_not_found(
    service: Running, system: System
) -> None:
    """A call id is 404 for every other org and sandbox, as is an unknown id."""
    admin = await service.key()
    await service.request("POST", "/v1/sandboxes", admin, {"name": "dev", "type": "development"})
    _, body = await service.request("POST", "/v1/calls", admin, call(system, "ok"))
    others = [await service.key(org="other"), await service.key(sandbox="dev")]
    answers = [await get(service, h, body["callId"]) for h in others]
    answers.append(await get(service, admin, "0" * 32))
    assert [404, 404, 404] == [status for status, _ in answers]
    assert {"CALL_NOT_FOUND"} == {problem["code"] for _, problem in answers}


async def test_only_callers_and_admins_make_calls(service: Running, system: System) -> None:
    """Viewers and editors may not make or read calls (403)."""
    statuses = []
    for role in ("viewer", "editor"):
        headers = await service.key(role=role)
        statuses.append((await service.request("POST", "/v1/calls", headers,
                                               call(system, "ok")))[0])  # fmt: skip
        statuses.append((await get(service, headers, "x"))[0])
    assert ([403] * 4, {}) == (statuses, system.hits)


async def deploy_throttling(service: Running, headers: dict[str, str], url: str, rate: int) -> None:
    """Create and deploy the org's throttling config through the Adobe route."""
    payload = {"name": "t", "urlPattern": url, "methods": ["POST"], "maxThroughput": rate}
    base = "/journey/orchestration/throttlingConfigs"
    status, created = await service.request("POST", base, headers, payload)
    assert 200 == status, created
    status, _ = await service.request("POST", f"{base}/{created['uid']}/deploy", headers)
    assert 204 == status


async def test_a_read_racing_a_queued_calls_end_answers_its_real_ending(
    start_service: StartService, clock: FakeClock, system: System,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """GET /v1/calls/{id} of a queued call whose row is read (state ``queued``) just
    before the call ends and its result is written answers 202 or the call's own result,
    never an ending the call did not have. (Found by ``test_kill.py``: a call answered
    ``queued`` read ``network_error``, "stopped while the call was running", and
    ``success`` a moment later.)"""
    service = await start_service(clock=clock)
    headers = await service.key()
    await deploy_throttling(service, headers, system.url("call/*"), 200)
    await asyncio.gather(*(service.request("POST", "/v1/calls", headers,
                                           call(system, f"call/{n}", waitSeconds=0))
                           for n in range(200)))  # fmt: skip
    status, queued = await service.request("POST", "/v1/calls", headers,
                                           call(system, "call/200", waitSeconds=0))  # fmt: skip
    assert (202, "queued") == (status, queued["state"])
    call_id, db = queued["callId"], service.runtime.calls._db

    async def row_state() -> str | None:
        rows = await db.execute("test", "SELECT state FROM calls WHERE call_id = ?", (call_id,))
        return rows[0][0] if rows else None

    async def written_queued() -> bool:
        return await row_state() == "queued"

    await eventually(written_queued)
    read, real_execute = asyncio.Event(), db.execute

    async def execute(what: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        rows = await real_execute(what, sql, params)
        if what == "reading a call" and params[:1] == (call_id,) and not read.is_set():
            read.set()  # the row says queued; the call ends and is written meanwhile

            async def done() -> bool:
                return not service.runtime.gate.running(call_id) and await row_state() == "done"

            await eventually(done)
        return rows

    monkeypatch.setattr(db, "execute", execute)
    reading = asyncio.create_task(service.request("GET", f"/v1/calls/{call_id}", headers))
    await read.wait()
    await clock.advance(WINDOW)  # a slot frees: the queued call runs and ends
    status, answer = await reading
    monkeypatch.undo()
    assert (200, "success") == (status, answer["outcome"]), answer
    assert (200, answer) == await service.request("GET", f"/v1/calls/{call_id}", headers)


async def raw(service: Running, method: str, path: str, headers: dict[str, str],
              body: Any = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """Status, headers and JSON body of one request."""
    async with service.http.request(method, service.base + path, headers=headers,
                                    json=body) as response:  # fmt: skip
        return response.status, dict(response.headers), await response.json()


def pending(call_id: str) -> dict[str, str]:
    return {"Location": f"/v1/calls/{call_id}", "Retry-After": "1"}


async def test_a_202_says_where_and_when_to_ask_for_the_outcome(
    service: Running, system: System
) -> None:
    """Every 202 (the POST, a repeated idempotency key, the GET by either door) carries
    Location (the call's URL) and Retry-After; a 200 carries neither."""
    headers = await service.key()
    body = call(system, "hold", waitSeconds=0, idempotencyKey="k")
    status, sent, made = await raw(service, "POST", "/v1/calls", headers, body)
    call_id = made["callId"]
    path = f"/v1/calls/{call_id}"
    answers = [
        (status, sent),
        (await raw(service, "POST", "/v1/calls", headers, body))[:2],
        (await raw(service, "GET", path, headers))[:2],
        (await raw(service, "GET", path, headers | {"Content-Type": "text/plain"}))[:2],
    ]
    system.release.release()
    await eventually(lambda: _status_is(service, headers, call_id, 200))
    done = (await raw(service, "GET", path, headers))[:2]
    expected = pending(call_id)
    assert [(202, expected)] * 4 + [(200, {})] == [
        (code, {k: v for k, v in got.items() if k in expected}) for code, got in [*answers, done]
    ]  # fmt: skip


async def _status_is(service: Running, headers: dict[str, str], call_id: str, status: int) -> bool:
    return status == (await get(service, headers, call_id))[0]


async def deploy_capping(service: Running, headers: dict[str, str], url: str, count: int) -> None:
    """Create and deploy a capping config of ``count`` calls a second on ``url``."""
    payload = {
        "url": url,
        "methods": ["POST"],
        "services": {"action": {"rating": {"maxCallsCount": count, "periodInMs": 1000}}},
    }
    base = "/journey/orchestration/endpointConfigs"
    status, created = await service.request("POST", base, headers, payload)
    assert 200 == status, created
    assert 204 == (await service.request("POST", f"{base}/{created['uid']}/deploy", headers))[0]


async def test_a_capped_call_replayed_later_makes_the_same_request_under_a_new_id(
    service: Running, system: System, clock: FakeClock
) -> None:
    """A call capped at 1/s is replayed a second later: a new call id, the same method,
    URL, headers and body reach the system, with the new id as Idempotency-Key; the
    original's callback URL is called back, and the list names the call replayed."""
    headers = await service.key()
    await deploy_capping(service, headers, system.url("echo"), 1)
    seen: list[tuple[str, str | None, str | None]] = []
    system.on_request = lambda r: seen.append(
        (r.path_qs, r.headers.get("X-Note"), r.headers.get("Idempotency-Key"))
    )
    request = {"headers": {"X-Note": "n", "Content-Type": "text/plain"}, "body": "a=1"}
    await service.request("POST", "/v1/calls", headers, call(system, "echo?x=1", request=request))
    status, capped = await service.request("POST", "/v1/calls", headers, call(
        system, "echo?x=1", request=request, callbackUrl=system.url("cb")))  # fmt: skip
    assert (200, "capped") == (status, capped["outcome"])
    await clock.advance(WINDOW)
    status, again = await service.request("POST", f"/v1/calls/{capped['callId']}:replay",
                                          headers, {"waitSeconds": 10})  # fmt: skip
    assert (200, "success", {"body": "a=1", "contentType": "text/plain"}) == (
        status, again["outcome"], again["response"]["body"])  # fmt: skip
    assert again["callId"] != capped["callId"]
    assert ("/echo?x=1", "n", again["callId"]) == seen[-1]
    await until(lambda: len(system.callbacks) == 2)
    assert {capped["callId"], again["callId"]} == {body["callId"] for _, body in system.callbacks}
    await service.runtime.calls.written()
    _, listed = await service.request("GET", "/v1/calls?limit=1", headers)
    assert [(again["callId"], capped["callId"])] == [
        (c["callId"], c["replayOf"]) for c in listed["calls"]
    ]


async def test_a_replay_not_ended_answers_202_with_location(
    service: Running, system: System, clock: FakeClock
) -> None:
    """A replay that waits 0 s (by default 30) while the system holds it: 202 with its
    new id, Location and Retry-After; its outcome is read there once released."""
    headers = await service.key()
    await service.request("PUT", "/v1/journeys/welcome", headers, {"timeoutSeconds": 1})
    status, held = await service.request("POST", "/v1/calls", headers,
                                         call(system, "hold", waitSeconds=0))  # fmt: skip
    await until(lambda: system.in_flight == 1)
    await clock.advance(1)
    await eventually(lambda: _status_is(service, headers, held["callId"], 200))
    assert "timedout" == (await get(service, headers, held["callId"]))[1]["outcome"]
    status, sent, answer = await raw(service, "POST", f"/v1/calls/{held['callId']}:replay",
                                     headers, {"waitSeconds": 0})  # fmt: skip
    assert (202, "running") == (status, answer["state"])
    assert pending(answer["callId"]).items() <= sent.items()
    system.release.release()
    await eventually(lambda: _status_is(service, headers, answer["callId"], 200))


async def test_a_replay_is_refused_for_a_call_not_ended_succeeded_or_unknown(
    service: Running, system: System
) -> None:
    """409 CALL_NOT_ENDED while a call runs, 409 CALL_NOT_REPLAYABLE after a success,
    404 CALL_NOT_FOUND for an unknown id or another org's call; nothing is called."""
    headers = await service.key()
    other = await service.key(org="other")
    _, held = await service.request("POST", "/v1/calls", headers,
                                    call(system, "hold", waitSeconds=0))  # fmt: skip
    _, ok = await service.request("POST", "/v1/calls", headers, call(system, "ok"))
    _, failed = await service.request("POST", "/v1/calls", headers, call(system, "missing"))
    await until(lambda: system.in_flight == 1)
    answers = []
    for who, call_id in ((headers, held["callId"]), (headers, ok["callId"]),
                         (headers, "0" * 32), (other, failed["callId"])):  # fmt: skip
        status, problem = await service.request("POST", f"/v1/calls/{call_id}:replay", who)
        answers.append((status, problem["code"]))
    assert [(409, "CALL_NOT_ENDED"), (409, "CALL_NOT_REPLAYABLE"), (404, "CALL_NOT_FOUND"),
            (404, "CALL_NOT_FOUND")] == answers  # fmt: skip
    assert ({"hold": 1, "ok": 1, "missing": 1}, 403) == (
        system.hits,
        (await service.request("POST", f"/v1/calls/{failed['callId']}:replay",
                               await service.key(role="viewer")))[0],
    )  # fmt: skip


@pytest.mark.parametrize("sealed", [True, False], ids=["data-key", "no-data-key"])
async def test_a_kept_request_is_sealed_with_the_data_key_and_replays_after_a_restart(
    start_service: StartService, clock: FakeClock, system: System, sealed: bool
) -> None:
    """The request of a failed call is kept for its replay: with a data key its header and
    body are not readable in service.db; after a restart the replay sends them. Started
    without the key, the replay is 409 CALL_NOT_REPLAYABLE."""
    keys = (b"k" * 32,) if sealed else ()
    settings = Settings(allow_loopback=True, data_keys=keys)
    service = await start_service(clock=clock, settings=settings)
    headers = await service.key()
    request = {"headers": {"Authorization": "Bearer partner-secret"}, "body": "card=4242"}
    _, failed = await service.request("POST", "/v1/calls", headers,
                                      call(system, "missing", request=request))  # fmt: skip
    await service.runtime.calls.written()
    rows = await service.runtime.db.execute(
        "test", "SELECT request FROM calls WHERE call_id = ?", (failed["callId"],)
    )
    await service.stop()
    stored = bytes(rows[0][0])
    assert (not sealed, not sealed) == (b"partner-secret" in stored, b"card=4242" in stored)

    seen: list[str | None] = []
    system.on_request = lambda r: seen.append(r.headers.get("Authorization"))
    again = await start_service(clock=clock, settings=settings)
    status, replayed = await again.request("POST", f"/v1/calls/{failed['callId']}:replay",
                                           headers, {"waitSeconds": 10})  # fmt: skip
    assert (200, "http_error", ["Bearer partner-secret"]) == (
        status, replayed["outcome"], seen)  # fmt: skip
    if sealed:
        await again.stop()
        keyless = await start_service(clock=clock)
        status, problem = await keyless.request(
            "POST", f"/v1/calls/{failed['callId']}:replay", headers
        )
        assert (409, "CALL_NOT_REPLAYABLE") == (status, problem["code"])
