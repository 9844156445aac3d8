"""``GET /v1/calls`` over real HTTP: ended calls listed, filtered, paged and followed.

The service runs on a FakeClock against a loopback system; a call is listed once its
result is written, which ``runtime.calls.written()`` waits for (real I/O, no sleep).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import System, eventually, until
from tests.service.conftest import Running, StartService
from tests.services import shared

from sluicegate.backends.postgres import PostgresDatabase
from sluicegate.records import iso_time
from sluicegate.service.db import DB_NAME, POSTGRES_MIGRATIONS, SCHEMA
from sluicegate.service.routes.call_models import CallList
from sluicegate.testing import FakeClock


def call(system: System, path: str, journey: str = "welcome", **extra: Any) -> dict[str, Any]:
    request = {"method": "POST", "url": system.url(path)} | extra.pop("request", {})
    return {"journeyId": journey, "service": "action", "request": request} | extra


async def make(service: Running, headers: dict[str, str], body: dict[str, Any]) -> str:
    status, answer = await service.request("POST", "/v1/calls", headers, body)
    assert status in (200, 202), answer
    call_id: str = answer["callId"]
    return call_id


async def listed(service: Running, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    """The answer of ``GET /v1/calls?query`` once every result so far is written."""
    await service.runtime.calls.written()
    status, answer = await service.request("GET", f"/v1/calls{query}", headers)
    assert 200 == status, answer
    CallList.model_validate(answer)
    return dict(answer)


def ids(answer: dict[str, Any]) -> list[str]:
    return [item["callId"] for item in answer["calls"]]


async def test_ended_calls_are_listed_newest_first_with_their_request_line(
    service: Running, system: System, clock: FakeClock
) -> None:
    """Each ended call is listed once, newest first, with its journey, request line
    (no query string), host, endpoint, outcome, status and times."""
    headers, start = await service.key(), clock.now()
    ok = await make(service, headers, call(system, "ok?token=secret"))
    await clock.advance(2)
    missing = await make(service, headers, call(system, "missing", journey="other"))
    answer = await listed(service, headers)
    host = system.base.removeprefix("http://").split(":")[0]
    common = {"service": "action", "method": "POST", "host": host, "endpoint": host,
              "replayOf": None}  # fmt: skip
    assert [
        {"callId": missing, "journeyId": "other", "url": system.url("missing"),
         "outcome": "http_error", "status": 404, "createdAt": iso_time(start + 2),
         "endedAt": iso_time(start + 2), **common},
        {"callId": ok, "journeyId": "welcome", "url": system.url("ok"), "outcome": "success",
         "status": 200, "createdAt": iso_time(start), "endedAt": iso_time(start), **common},
    ] == answer["calls"]  # fmt: skip
    assert answer["next"] is None


async def test_pages_follow_each_other_without_a_repeat_or_a_gap(
    service: Running, system: System
) -> None:
    """Newest first, pages of 2 list all 5 calls once and end with next null; oldest
    first lists them in the other order, and its last page's next lists later calls."""
    headers = await service.key()
    made = [await make(service, headers, call(system, "ok")) for _ in range(5)]
    newest, query = [], "?limit=2"
    while True:
        page = await listed(service, headers, query)
        newest.append(ids(page))
        if page["next"] is None:
            break
        query = f"?limit=2&cursor={page['next']}"
    assert [made[4:2:-1], made[2:0:-1], made[:1]] == newest

    oldest, query = [], "?limit=2&order=oldest"
    for _ in range(3):
        page = await listed(service, headers, query)
        oldest.append(ids(page))
        query = f"?limit=2&cursor={page['next']}"
    later = await make(service, headers, call(system, "ok"))
    assert ([made[0:2], made[2:4], made[4:]], [later]) == (
        oldest, ids(await listed(service, headers, query)))  # fmt: skip


async def test_filters_narrow_the_list(service: Running, system: System, clock: FakeClock) -> None:
    """journeyId, outcome, endpoint (a capping config's uid), host and the end time
    (from inclusive, to exclusive) each narrow the list."""
    headers = await service.key()
    base = "/journey/orchestration/endpointConfigs"
    payload = {
        "url": system.url("ok"),
        "methods": ["POST"],
        "services": {"action": {"rating": {"maxCallsCount": 100, "periodInMs": 1000}}},
    }
    status, config = await service.request("POST", base, headers, payload)
    assert (200, 204) == (status, (await service.request(
        "POST", f"{base}/{config['uid']}/deploy", headers))[0])  # fmt: skip
    start = clock.now()
    ruled = await make(service, headers, call(system, "ok", journey="a"))
    await clock.advance(10)
    failed = await make(service, headers, call(system, "missing", journey="b"))
    await clock.advance(10)
    other = await make(service, headers, call(system, "echo", journey="b"))
    host = system.base.removeprefix("http://").split(":")[0]

    async def found(query: str) -> list[str]:
        return ids(await listed(service, headers, query))

    assert [[ruled], [other, failed], [failed], [ruled],
            [other, failed, ruled], [failed], [other], []] == [
        await found("?journeyId=a"), await found("?journeyId=b"),
        await found("?outcome=http_error"), await found(f"?endpoint={config['uid']}"),
        await found(f"?host={host}"), await found(f"?from={iso_time(start + 10)}&to={start + 20}"),
        await found(f"?from={start + 20}"), await found("?host=example.org"),
    ]  # fmt: skip


async def test_the_tail_cursor_lists_each_call_once_in_the_order_written(
    service: Running, system: System
) -> None:
    """From an answer's tail: nothing ended before it; then the calls in the order their
    results were written, a call started first and ended last included, each once."""
    headers = await service.key()
    await make(service, headers, call(system, "ok"))
    tail = (await listed(service, headers))["tail"]
    held = await make(service, headers, call(system, "hold", waitSeconds=0))
    await until(lambda: system.in_flight == 1)
    quick = [await make(service, headers, call(system, "ok")) for _ in range(3)]
    first = await listed(service, headers, f"?cursor={tail}")
    system.release.release()

    async def ended() -> bool:
        return 200 == (await service.request("GET", f"/v1/calls/{held}", headers))[0]

    await eventually(ended)
    second = await listed(service, headers, f"?cursor={first['next']}")
    third = await listed(service, headers, f"?cursor={second['next']}")
    assert (quick, [held], []) == (ids(first), ids(second), ids(third))


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?outcome=lost", "INVALID_REQUEST"),
        ("?limit=0", "INVALID_REQUEST"),
        ("?limit=1001", "INVALID_REQUEST"),
        ("?order=random", "INVALID_REQUEST"),
        ("?journeyId=a%00b", "INVALID_REQUEST"),
        ("?cursor=bm90IGEgY3Vyc29y", "INVALID_CURSOR"),
        ("?cursor=%ff", "INVALID_CURSOR"),
        ("?from=yesterday", "INVALID_TIME"),
        ("?from=20&to=10", "INVALID_RANGE"),
    ],
)
async def test_bad_parameters_are_400_with_a_code(service: Running, query: str, code: str) -> None:
    """A filter, limit, order, cursor or time the listing cannot read is 400 with a code."""
    status, problem = await service.request("GET", f"/v1/calls{query}", await service.key())
    assert (400, code) == (status, problem["code"])


async def test_every_role_lists_only_its_own_org_and_sandbox(
    service: Running, system: System
) -> None:
    """Any role of the org lists its calls; another org or sandbox sees none of them."""
    admin = await service.key()
    await service.request("POST", "/v1/sandboxes", admin, {"name": "dev", "type": "development"})
    made = await make(service, admin, call(system, "ok"))
    seen = {}
    for role in ("admin", "editor", "caller", "viewer"):
        seen[role] = ids(await listed(service, await service.key(role=role)))
    for name, headers in (("other org", await service.key(org="other")),
                          ("dev sandbox", await service.key(sandbox="dev"))):  # fmt: skip
        seen[name] = ids(await listed(service, headers))
    assert {"admin": [made], "editor": [made], "caller": [made], "viewer": [made],
            "other org": [], "dev sandbox": []} == seen  # fmt: skip


async def test_a_data_dir_from_before_lists_the_results_it_had(
    start_service: StartService, tmp_path: Path, clock: FakeClock, system: System
) -> None:
    """A service.db whose calls table predates the listing is upgraded when it opens: its
    results are listed, in the order they were accepted, with outcome and status; after
    a restart, a new call is listed after them."""
    data, now = tmp_path / "old", clock.now()
    data.mkdir()
    with sqlite3.connect(data / DB_NAME) as conn:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO calls (call_id, org, sandbox, journey, state, created_at, result) "
            "VALUES (?, 'acme', 'prod', 'j', ?, ?, ?)",
            [("second", "done", now - 2, '{"outcome":"http_error","response":{"status":503}}'),
             ("first", "done", now - 3, '{"outcome":"success","response":{"status":200}}'),
             ("open", "queued", now - 1, None)],
        )  # fmt: skip
    service = await start_service(data, clock=clock)
    answer = await listed(service, await service.key())
    await service.stop()
    again = await start_service(data, clock=clock)
    headers = await again.key()
    new = await make(again, headers, call(system, "ok"))
    assert [
        ("second", "http_error", 503, iso_time(now - 2)),
        ("first", "success", 200, iso_time(now - 3)),
    ] == [(c["callId"], c["outcome"], c["status"], c["endedAt"]) for c in answer["calls"]]
    assert ["first", "second", new] == ids(await listed(again, headers, "?order=oldest"))


async def test_postgres_lists_and_upgrades_results_it_had(
    start_service: StartService, system: System, clock: FakeClock
) -> None:
    """On PostgreSQL, the listing migration numbers the results written before it (one
    holding a NUL, which jsonb refuses, included), and calls written after are listed
    after them, in one order."""
    async with shared() as storage:
        url = storage.postgres_url
        old = PostgresDatabase(url, component="service", migrations=POSTGRES_MIGRATIONS[:-1])
        await old.start()
        await old.execute(
            "writing an old result",
            "INSERT INTO calls (call_id, org, sandbox, journey, state, created_at, result) "
            "VALUES ('old', 'acme', 'prod', 'j', 'done', ?, ?)",
            (clock.now() - 1, '{"outcome":"capped","response":null}'),
        )
        await old.execute(
            "writing an old result whose body holds a NUL",
            "INSERT INTO calls (call_id, org, sandbox, journey, state, created_at, result) "
            "VALUES ('nul', 'acme', 'prod', 'j', 'done', ?, ?)",
            (
                clock.now() - 0.5,
                '{"outcome":"success","response":{"status":200,"body":"a\\u0000"}}',
            ),
        )
        await old.aclose()
        service = await start_service(storage, clock=clock)
        headers = await service.key()
        new = await make(service, headers, call(system, "ok"))
        answer = await listed(service, headers, "?order=oldest")
        await service.stop()
    assert [("old", "capped", None), ("nul", "success", 200), (new, "success", 200)] == [
        (c["callId"], c["outcome"], c["status"]) for c in answer["calls"]
    ]


async def test_instances_sharing_postgres_list_every_call_once_in_one_order(
    start_service: StartService, system: System, clock: FakeClock
) -> None:
    """Two instances on one PostgreSQL, 20 calls made through both at once: paging from
    a tail cursor on either lists each call once, and both list them in the same order."""
    async with shared() as storage:
        a = await start_service(storage, clock=clock)
        b = await start_service(storage, clock=clock)
        headers = await a.key()
        tail = (await listed(a, headers))["tail"]
        made = await asyncio.gather(*(make(a if n % 2 else b, headers, call(system, "ok"))
                                      for n in range(20)))  # fmt: skip
        await b.runtime.calls.written()
        orders = []
        for service in (a, b):
            seen, cursor = [], tail
            for _ in range(4):
                page = await listed(service, headers, f"?cursor={cursor}&limit=6")
                seen += ids(page)
                cursor = page["next"]
            orders.append(seen)
        await a.stop()
        await b.stop()
    assert (sorted(made), 20, orders[0]) == (sorted(orders[0]), len(set(orders[0])), orders[1])
