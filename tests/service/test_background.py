"""The service's background writers survive any failure: a writer that died would leave
results and reports unwritten for the rest of the process, silently."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import System, eventually
from tests.service.conftest import Running, StartService
from tests.service.test_calls_api import call
from tests.service.test_queues_api import step, throttled

from sluicegate.backends import commits
from sluicegate.service import buckets, calllog
from sluicegate.service.calllog import RETRY_WRITE_AFTER
from sluicegate.service.callrows import Batch
from sluicegate.testing import FakeClock


def failing_once(real: Any) -> Any:
    """``real``, except that its first call raises an error no store raises."""
    calls = 0

    def write(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug, not a storage failure")
        return real(*args)

    return write


async def failures(service: Running, headers: dict[str, str], task: str) -> float:
    """The ``sluicegate_background_failures_total`` of ``task`` in ``/metrics``."""
    async with service.http.get(service.base + "/metrics", headers=headers) as response:
        text = await response.text()
    series = f'sluicegate_background_failures_total{{task="{task}"}} '
    return next(float(line.removeprefix(series)) for line in text.splitlines()
                if line.startswith(series))  # fmt: skip


def rows(data: Path, sql: str) -> list[Any]:
    """Rows of ``service.db`` as another reader sees them (written and committed)."""
    with sqlite3.connect(f"file:{data / 'service.db'}?mode=ro", uri=True) as conn:
        return conn.execute(sql).fetchall()


async def test_the_call_log_writes_on_after_an_unexpected_error(
    start_service: StartService, clock: FakeClock, system: System, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The call log's first write raises a RuntimeError: the writer tries again and the
    result is written, without a restart; ``/metrics`` counts the failure."""
    monkeypatch.setattr(calllog, "write_batch", failing_once(calllog.write_batch))
    data = tmp_path / "data"
    service = await start_service(data, clock=clock)
    headers = await service.key()
    assert 0 == await failures(service, headers, "call_log")
    status, body = await service.request("POST", "/v1/calls", headers, call(system, "ok"))
    assert (200, "success") == (status, body["outcome"])
    await eventually(lambda: _equals(failures(service, headers, "call_log"), 1))
    await clock.advance(RETRY_WRITE_AFTER)

    async def written() -> bool:
        done = rows(data, f"SELECT state FROM calls WHERE call_id = '{body['callId']}'")
        return done == [("done",)]

    await eventually(written)


async def test_the_report_book_flushes_on_after_an_unexpected_error(
    start_service: StartService, clock: FakeClock, system: System, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The report book's first flush raises a RuntimeError: the next flush writes the
    call's bucket, without a restart; ``/metrics`` counts the failure."""
    monkeypatch.setattr(buckets, "_upsert", failing_once(buckets._upsert))
    data = tmp_path / "data"
    service = await start_service(data, clock=clock)
    headers = await service.key()
    await service.request("POST", "/v1/calls", headers, call(system, "ok"))

    async def counted() -> bool:
        await clock.advance(buckets.FLUSH_SECONDS)
        return rows(data, "SELECT sum(calls) FROM report_buckets") == [(1,)]

    await eventually(counted)
    assert 1 == await failures(service, headers, "reports")


async def _equals(value: Awaitable[float], expected: float) -> bool:
    return await value == expected


async def test_the_call_log_gathers_rows_unless_a_request_waits_for_them(
    start_service: StartService, clock: FakeClock, system: System, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """With an hour's pause for gathering rows: the row of a call with an idempotency key
    (its request waits for it) is written at once, alone; a plain call's row and result
    wait, and a graceful stop writes them at once, together, with the first call's result."""
    monkeypatch.setattr(commits, "LINGER", 3600.0)
    batches: list[set[str]] = []
    real = calllog.write_batch

    def write_batch(batch: Batch, *args: Any) -> Any:
        ids = {a.call_id for a in batch.accepted} | {f.call_id for f in batch.finished}
        batches.append(ids)
        return real(batch, *args)

    monkeypatch.setattr(calllog, "write_batch", write_batch)
    data = tmp_path / "data"
    service = await start_service(data, clock=clock)
    headers = await service.key()
    async with asyncio.timeout(10):
        status, keyed = await service.request(
            "POST", "/v1/calls", headers, call(system, "ok", idempotencyKey="k-1")
        )
    assert 200 == status
    status, plain = await service.request("POST", "/v1/calls", headers, call(system, "ok"))
    assert 200 == status
    sql = "SELECT call_id FROM calls WHERE call_id IN ('{}', '{}')"
    assert [(keyed["callId"],)] == rows(data, sql.format(keyed["callId"], plain["callId"]))
    async with asyncio.timeout(10):
        await service.stop()
    assert [{keyed["callId"]}, {keyed["callId"], plain["callId"]}] == batches
    assert [("done",)] == rows(data, f"SELECT state FROM calls WHERE call_id = '{plain['callId']}'")


async def test_a_queued_call_whose_row_says_accepted_reads_queued(
    start_service: StartService, clock: FakeClock, system: System, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A call with an idempotency key has its row written (``accepted``) before it is
    submitted; queued then (its queue is paused), the row's ``queued`` waits for the next
    write, an hour away here: meanwhile a read of the call says ``queued``, not
    ``running``."""
    monkeypatch.setattr(commits, "LINGER", 3600.0)
    service = await start_service(tmp_path / "data", clock=clock)
    headers = await service.key()
    uid = await throttled(service, headers, system.url("call/*"))
    await step(service, headers, uid, "pause")
    async with asyncio.timeout(10):
        status, answer = await service.request(
            "POST", "/v1/calls", headers,
            call(system, "call/1", waitSeconds=0, idempotencyKey="k-1"),
        )  # fmt: skip
    assert (202, "queued") == (status, answer["state"])
    sql = f"SELECT state FROM calls WHERE call_id = '{answer['callId']}'"
    assert [("accepted",)] == rows(tmp_path / "data", sql)
    status, found = await service.request("GET", f"/v1/calls/{answer['callId']}", headers)
    assert (202, "queued") == (status, found["state"])


async def test_a_listing_shows_a_call_that_has_answered_although_its_row_waits(
    start_service: StartService, clock: FakeClock, system: System, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """With an hour's pause for gathering rows, a call answered 200 is in the listing asked
    right after: the listing has the results held in memory written first."""
    monkeypatch.setattr(commits, "LINGER", 3600.0)
    service = await start_service(tmp_path / "data", clock=clock)
    headers = await service.key()
    status, made = await service.request("POST", "/v1/calls", headers, call(system, "ok"))
    assert 200 == status
    async with asyncio.timeout(10):
        status, listed = await service.request("GET", "/v1/calls", headers)
    assert (200, [made["callId"]]) == (status, [c["callId"] for c in listed["calls"]])
