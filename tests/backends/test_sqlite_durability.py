"""What the SQLite backend adds to the contract: durability, ownership, errors, group commit."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sluicegate.backends import commits
from sluicegate.backends.sqlite import DB_NAME, SqliteBackend
from sluicegate.errors import InvalidCall, StorageError
from sluicegate.storage import Grant, Limit, QueuedCall, Wait

MakeQueued = Callable[..., QueuedCall]


async def opened(path: Path, now_ms: int = 0) -> SqliteBackend:
    backend = await SqliteBackend.open(path)
    await backend.recover(now_ms)
    return backend


async def test_reopen_after_aclose_keeps_queue_and_configs(
    tmp_path: Path, queued: MakeQueued
) -> None:
    """Everything written before ``aclose``, buffered removals included, is there on reopen;
    calls claimed and not removed are waiting again."""
    backend = await opened(tmp_path)
    await asyncio.gather(*(backend.queue.push(queued(n)) for n in range(5)))
    await backend.configs.save("capping", "c1", {"uid": "c1", "n": 1})
    await backend.configs.save("throttling", "t1", {"uid": "t1"})
    await backend.configs.delete("capping", "c1")
    await backend.queue.claim("q", 3)
    await backend.queue.remove("call-2")  # only buffered: aclose must write it
    await backend.aclose()

    reopened = await opened(tmp_path)
    try:
        expected_queue = [queued(n) for n in (0, 1, 3, 4)]
        assert (4, expected_queue) == (
            reopened.queue.depth("q"),
            await reopened.queue.claim("q", 10),
        )
        expected_configs: list[tuple[str, dict[str, Any]]] = [("throttling", {"uid": "t1"})]
        assert expected_configs == await reopened.configs.load()
    finally:
        await reopened.aclose()


async def test_sent_slots_survive_a_restart_and_unsent_ones_count_from_it(
    tmp_path: Path,
) -> None:
    """After a restart a slot sent at 500 is held until 1500, and one granted but never
    stamped (its fate unknown) counts as sent at the restart (2000), until 3000."""
    rule = Limit(key="rule", count=2, period_ms=1000)
    backend = await opened(tmp_path)
    sent = await backend.slots.acquire([rule], 0)
    unknown = await backend.slots.acquire([rule], 0)
    assert isinstance(sent, Grant)
    assert isinstance(unknown, Grant)
    await backend.slots.recorded(unknown)
    backend.slots.sent(sent, 500)
    await backend.aclose()

    reopened = await opened(tmp_path, now_ms=2_000)
    try:
        assert 1 == await reopened.slots.in_use("rule", 2_000)
        assert isinstance(await reopened.slots.acquire([rule], 2_000), Grant)
        assert Wait(1_000) == await reopened.slots.acquire([rule], 2_000)
        assert Wait(1) == await reopened.slots.acquire([rule], 2_999)
    finally:
        await reopened.aclose()


async def test_writes_nothing_waits_for_gather_and_a_waited_batch_goes_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an hour's pause for gathering: the first reservation of a limit, which its
    request waits for, is written at once; a send time, which nothing waits for, stays
    gathering, and a graceful stop writes it at once (after the restart the slot is held
    from its send at 5, not from the restart at 0)."""
    monkeypatch.setattr(commits, "LINGER", 3600.0)
    rule = Limit(key="rule", count=1000, period_ms=1000)
    backend = await opened(tmp_path)
    try:
        grant = await backend.slots.acquire([rule], 0)
        assert isinstance(grant, Grant)
        async with asyncio.timeout(10):
            await backend.slots.recorded(grant)
        backend.slots.sent(grant, 5)
        for _ in range(10):
            await asyncio.sleep(0)
        assert backend._commits._runs, "the send time was written without a pause"
    finally:
        async with asyncio.timeout(10):
            await backend.aclose()

    reopened = await opened(tmp_path, now_ms=0)
    try:
        assert (1, 0) == (
            await reopened.slots.in_use("rule", 1_004),
            await reopened.slots.in_use("rule", 1_005),
        )
    finally:
        await reopened.aclose()


async def test_a_push_that_cannot_be_stored_fails_alone(tmp_path: Path, queued: MakeQueued) -> None:
    """A call with a lone surrogate (built without ``Call.build``, which refuses it) pushed
    among others: it is refused with InvalidCall, and the pushes sharing its group commit
    are all stored."""
    backend = await opened(tmp_path)
    try:
        good = [queued(n) for n in range(3)]
        evil = queued(9)
        evil = replace(evil, call=replace(evil.call, headers={"X-Evil": "\udfff"}))
        pushed = await asyncio.gather(*(backend.queue.push(item) for item in
                                        (good[0], evil, good[1], good[2])),
                                      return_exceptions=True)  # fmt: skip
        assert [None, InvalidCall, None, None] == [
            type(p) if isinstance(p, Exception) else p for p in pushed
        ]
        assert good == await backend.queue.claim("q", 10)
    finally:
        await backend.aclose()


async def test_only_the_owner_reads_the_data(tmp_path: Path, queued: MakeQueued) -> None:
    """A new data directory is 0700 and its files 0600, the WAL too (queued calls hold
    partners' headers and bodies); a file left readable by an earlier version is made
    0600 at open."""
    data = tmp_path / "data"
    backend = await opened(data)
    try:
        await backend.queue.push(queued(0))
        modes = {f.name: f.stat().st_mode & 0o777 for f in data.iterdir()}
    finally:
        await backend.aclose()
    assert (0o700, {DB_NAME: 0o600, f"{DB_NAME}-wal": 0o600}) == (
        data.stat().st_mode & 0o777, modes)  # fmt: skip
    (data / DB_NAME).chmod(0o644)
    await (await opened(data)).aclose()
    assert 0o600 == (data / DB_NAME).stat().st_mode & 0o777


async def test_open_creates_the_data_directory(tmp_path: Path) -> None:
    """A missing data directory is created, with the database file inside."""
    backend = await SqliteBackend.open(tmp_path / "a" / "b")
    await backend.aclose()
    assert (tmp_path / "a" / "b" / DB_NAME).is_file()


async def test_aclose_is_idempotent_and_refuses_later_writes(
    tmp_path: Path, queued: MakeQueued
) -> None:
    """A second ``aclose`` does nothing; a push after close raises StorageError."""
    backend = await opened(tmp_path)
    await backend.aclose()
    await backend.aclose()
    with pytest.raises(StorageError, match="closed"):
        await backend.queue.push(queued(0))
    with pytest.raises(StorageError, match="closed"):
        await backend.configs.load()


async def test_a_held_data_directory_cannot_be_opened_twice(tmp_path: Path) -> None:
    """While one backend holds a data directory, opening it again fails with StorageError."""
    backend = await SqliteBackend.open(tmp_path)
    try:
        with pytest.raises(StorageError, match="another sluicegate process") as caught:
            await SqliteBackend.open(tmp_path)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    finally:
        await backend.aclose()
    second = await SqliteBackend.open(tmp_path)  # released by aclose
    await second.aclose()


async def test_database_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database whose ``user_version`` is newer than this code is not touched."""
    conn = sqlite3.connect(tmp_path / DB_NAME)
    try:
        conn.execute("PRAGMA user_version = 99")
    finally:
        conn.close()
    with pytest.raises(StorageError, match="schema"):
        await SqliteBackend.open(tmp_path)


async def test_data_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    """An unusable data directory raises StorageError, chained to the OS error."""
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError) as caught:
        await SqliteBackend.open(tmp_path / "file")
    assert isinstance(caught.value.__cause__, OSError)


async def test_failed_batch_raises_storage_error_to_its_pushers(
    tmp_path: Path, queued: MakeQueued
) -> None:
    """A commit that fails fails every push of its batch, chained to the sqlite3 error."""
    backend = await SqliteBackend.open(tmp_path)
    try:
        await backend._db.execute("sabotage", "DROP TABLE queued_calls")
        results = await asyncio.gather(
            *(backend.queue.push(queued(n)) for n in range(3)), return_exceptions=True
        )
        expected = [StorageError] * 3
        assert expected == [type(result) for result in results]
        assert isinstance(results[0], StorageError)
        assert isinstance(results[0].__cause__, sqlite3.OperationalError)
    finally:
        await backend.aclose()


async def test_a_reservation_whose_commit_failed_is_never_recorded(tmp_path: Path) -> None:
    """A slot reservation in a batch that failed raises StorageError from ``recorded``,
    also when asked after the batch is over: its request must not leave unrecorded."""
    backend = await opened(tmp_path)
    try:
        await backend._db.execute("sabotage", "DROP TABLE slots")
        limits = (Limit(key="k", count=1000, period_ms=1000),)
        grant = await backend.slots.acquire(limits, 0)
        assert isinstance(grant, Grant)
        with pytest.raises(StorageError):
            await backend.slots.recorded(grant)
        late = await backend.slots.acquire(limits, 0)
        assert isinstance(late, Grant)
        drainer = backend._commits._drainer
        assert drainer is not None
        await asyncio.wait({drainer})  # its batch fails before it is asked
        with pytest.raises(StorageError):
            await backend.slots.recorded(late)
    finally:
        await backend.aclose()


async def test_cancelled_push_does_not_cancel_its_batch(tmp_path: Path, queued: MakeQueued) -> None:
    """Cancelling one pusher leaves the other pushes of the same batch to complete."""
    backend = await opened(tmp_path)
    try:
        tasks = [asyncio.create_task(backend.queue.push(queued(n))) for n in range(3)]
        await asyncio.sleep(0)  # all three are buffered in one batch
        tasks[1].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        expected_results = ["ok", "CancelledError", "ok"]
        assert expected_results == ["ok" if r is None else type(r).__name__ for r in results]
        expected = ["call-0", "call-1", "call-2"]  # call-1 was buffered: it is written anyway
        assert expected == [item.call_id for item in await backend.queue.claim("q", 10)]
    finally:
        await backend.aclose()


N_PUSHES = 2000
CHILD = """
import asyncio, sys
from pathlib import Path
from sluicegate.backends.sqlite import SqliteBackend
from sluicegate.call import Call, Service
from sluicegate.storage import Grant, Limit, QueuedCall, Wait

N, BATCH, PAUSE = int(sys.argv[2]), 10, 0.004


def item(n):
    call = Call(org="o", sandbox="s", journey="j", service=Service.ACTION, method="POST",
                url=f"https://api.example.com/{n}", body=bytes(200))
    return QueuedCall(call_id=f"call-{n}", queue="q", call=call, enqueued_at=float(n), rate=200)


async def main():
    backend = await SqliteBackend.open(Path(sys.argv[1]))

    def batch(start):
        return asyncio.gather(*(backend.queue.push(item(n)) for n in range(start, start + BATCH)))

    previous = batch(0)
    for end in range(BATCH, N + BATCH, BATCH):
        current = batch(end) if end < N else None
        for _ in range(3):  # let `current` reach the writer thread: in flight during the ack
            await asyncio.sleep(0)
        await previous
        print(end, flush=True)  # every push below `end` is acknowledged
        previous = current
        await asyncio.sleep(PAUSE)  # spreads the stream over about a second
    print("done", flush=True)
    await asyncio.sleep(3600)


asyncio.run(main())
"""


def run_and_kill(data_dir: Path, *, kill_after: int) -> tuple[int, int, str]:
    """Start the pushing child, SIGKILL it once ``kill_after`` pushes are acknowledged.

    Returns (pushes acknowledged, child return code, child stderr). The child is killed and
    reaped whatever happens; a watchdog kills it if it hangs.
    """
    stderr = data_dir.parent / "child.err"
    with stderr.open("w") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data_dir), str(N_PUSHES)],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    watchdog = threading.Timer(60, child.kill)
    watchdog.start()
    acked = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip().isdigit():
                acked = int(line)
            if acked >= kill_after or line.strip() == "done":
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        # Lines the child printed before it died are acknowledgements too.
        for line in child.stdout.read().splitlines(keepends=True):
            if line.endswith("\n") and line.strip().isdigit():
                acked = int(line)
    finally:
        watchdog.cancel()
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    return acked, child.returncode, stderr.read_text()


@pytest.mark.slow
async def test_sigkill_loses_no_acknowledged_push(tmp_path: Path) -> None:
    """A child killed with SIGKILL mid-stream: every acknowledged push is stored, in order."""
    data_dir = tmp_path / "data"
    acked, returncode, stderr = run_and_kill(data_dir, kill_after=300)
    expected_returncode = -signal.SIGKILL
    assert expected_returncode == returncode, stderr
    assert 300 <= acked < N_PUSHES, f"not killed mid-stream: {acked} acked\n{stderr}"

    backend = await opened(data_dir)
    try:
        stored = [item.call_id for item in await backend.queue.claim("q", N_PUSHES)]
    finally:
        await backend.aclose()
    # A prefix of the pushes, at least as long as the acknowledged part: none lost, no gap.
    expected = [f"call-{n}" for n in range(max(acked, len(stored)))]
    assert expected == stored


SPARE_CHILD = """
import asyncio, sys, time
from sluicegate.backends.sqlite import SqliteBackend
from sluicegate.storage import Limit

async def main(data_dir):
    backend = await SqliteBackend.open(data_dir)
    await backend.recover(0)
    rule = Limit(key="rule", count=200, period_ms=1000)  # a spare of 2
    first = await backend.slots.acquire([rule], 0)
    await backend.slots.recorded(first)  # the first waits: its commit records the spare
    backend.slots.sent(first, 1)
    blocked = asyncio.ensure_future(backend._db.run("blocking", lambda conn: time.sleep(60)))
    await asyncio.sleep(0)  # the writer thread takes it: no batch is written from here on
    for n in (2, 3):  # these leave with their reservations unwritten
        grant = await backend.slots.acquire([rule], n)
        await backend.slots.recorded(grant)
        backend.slots.sent(grant, n)
    print("SENT", flush=True)
    over = await backend.slots.acquire([rule], 4)
    await backend.slots.recorded(over)  # a third unwritten one would exceed the spare
    print("NOT WAITED", flush=True)
    await blocked

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.slow
async def test_reservations_sent_unwritten_before_a_crash_are_held_after_it(
    tmp_path: Path,
) -> None:
    """A limit of 200 lets 2 requests leave before their reservations are written; a
    third waits. Killed then, the restart holds 3 slots (1 written, 2 spare) for a period:
    all that left, although the journal holds one; they are written, so a second restart
    within that period holds the same 3, no more."""
    data_dir = tmp_path / "data"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SPARE_CHILD, str(data_dir), stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(30):
            said = await child.stdout.readline()
        child.send_signal(signal.SIGKILL)
        said += await child.stdout.read()
        await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert (b"SENT\n", -signal.SIGKILL) == (said, child.returncode)

    backend = await opened(data_dir, now_ms=500)
    try:
        assert 3 == await backend.slots.in_use("rule", 500)
        assert 0 == await backend.slots.in_use("rule", 1_500)  # held for one period
    finally:
        await backend.aclose()
    again = await opened(data_dir, now_ms=600)
    try:
        assert 3 == await again.slots.in_use("rule", 600)
    finally:
        await again.aclose()
