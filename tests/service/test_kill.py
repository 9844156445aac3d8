"""SIGKILL of ``sluicegate serve``: what was acknowledged survives, as the docs promise.

The service runs as a process of its own (``tests.loopback.sluicegate_serve``) and is
killed with SIGKILL, then started again on the same data dir. The external system is a
loopback :class:`~tests.loopback.System` that records every request it receives with the
``Idempotency-Key`` sluicegate puts on it (the call's id) and the number the test put in
its query string, so each arrival is reconciled with the submission it came from.

What the docs promise (docs/api-calls.md, "Restarts and durability", "Idempotency";
docs/engine.md, "Throttling queue"):

* a call queued by throttling (answered ``queued``) survives a crash, runs after the
  restart and ends; delivery of a queued call is at least once: one claimed (running)
  at the crash is sent again, from its place at the head of its queue, in FIFO order;
* a call that was not queued is sent at most once: a call running at the crash cannot be
  resumed, and ends ``network_error`` with the "stopped while the call was running"
  message;
* a call with an idempotency key is written before it starts: after the crash it is
  found, and the same key sent again answers that call and calls nothing again;
* a call with neither key nor callback, accepted in the last moments, may be forgotten
  (404), but is never left running; a queued one "is recorded again when it ends" (so it
  may read 404 until it has run after the restart).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from tests.loopback import Served, System, eventually, sluicegate_serve, until

from sluicegate.outcomes import INTERRUPTED

pytestmark = pytest.mark.slow

ADOBE = "/journey/orchestration"
#: The throttling rate of both tests: the lowest a config may have, so that a queue forms.
RATE = 200
#: Concurrent clients submitting calls while the service is killed.
CLIENTS = 32
#: Acknowledged submissions before the kill.
KILL_AFTER = 1200


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request received by the external system."""

    path: str  # "d" (direct) or "q" (throttled)
    n: int  # the test's number of the submission
    call_id: str  # its Idempotency-Key: the call's id
    key: str | None  # the idempotency key the client gave, if any
    at: float  # time.monotonic() when the system saw it


def recorded(system: System) -> list[Arrival]:
    """Every request ``system`` receives from now on, in the order it saw them."""
    arrivals: list[Arrival] = []

    def record(request: web.Request) -> None:
        arrivals.append(Arrival(request.match_info["name"], int(request.query.get("n", -1)),
                                request.headers.get("Idempotency-Key", ""),
                                request.query.get("key"), time.monotonic()))  # fmt: skip

    system.on_request = record
    return arrivals


@dataclass
class Api:
    """The service's HTTP API, with the development key (org ``demo``, sandbox ``prod``)."""

    base: str
    token: str
    http: aiohttp.ClientSession

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "x-gw-ims-org-id": "demo",
                "x-sandbox-name": "prod"}  # fmt: skip

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body,
                                     headers=self.headers) as response:  # fmt: skip
            text = await response.text()
            if text and response.content_type == "application/json":
                return response.status, json.loads(text)
            return response.status, text or None

    async def throttle(self, url_pattern: str) -> None:
        """Create and deploy the org's throttling config, at :data:`RATE`."""
        payload = {"name": "kill", "urlPattern": url_pattern, "methods": ["POST"],
                   "maxThroughput": RATE}  # fmt: skip
        status, created = await self.request("POST", f"{ADOBE}/throttlingConfigs", payload)
        assert 200 == status, created
        deployed = await self.request("POST", f"{ADOBE}/throttlingConfigs/{created['uid']}/deploy")
        assert (204, None) == deployed

    async def results(self, call_ids: list[str]) -> dict[str, tuple[int, Any]]:
        """``GET /v1/calls/{id}`` of each, CLIENTS at a time."""
        limit = asyncio.Semaphore(CLIENTS)

        async def one(call_id: str) -> tuple[int, Any]:
            async with limit:
                return await self.request("GET", f"/v1/calls/{call_id}")

        answers = await asyncio.gather(*(one(call_id) for call_id in call_ids))
        return dict(zip(call_ids, answers, strict=True))

    async def ended(
        self, call_ids: list[str], seconds: float, seen: dict[str, set[int]] | None = None
    ) -> dict[str, tuple[int, Any]]:
        """Their answers once each has ended (200); every status each gave meanwhile is
        added to ``seen``."""
        answers: dict[str, tuple[int, Any]] = {}
        seen = {} if seen is None else seen

        async def settled() -> bool:
            pending = [c for c in call_ids if c not in answers or answers[c][0] != 200]
            answers.update(await self.results(pending))
            for call_id in pending:
                seen.setdefault(call_id, set()).add(answers[call_id][0])
            return all(answers[c][0] == 200 for c in call_ids)

        await eventually(settled, seconds=seconds)
        return answers


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=CLIENTS + 8)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@asynccontextmanager
async def serving(data: Path) -> AsyncIterator[tuple[Served, str]]:
    """``sluicegate serve`` on ``data``; yields it and its base URL."""
    async with sluicegate_serve(data) as served:
        yield served, served.base


async def killed(served: Served, system: System) -> None:
    """SIGKILL ``served``; return once the external system has handled what it sent."""
    served.kill()
    await served.process.wait()
    await until(lambda: system.connections() == 0)


@dataclass(frozen=True, slots=True)
class Sent:
    """One call a client submitted (acknowledged or not)."""

    n: int
    path: str
    body: dict[str, Any]
    key: str | None


@dataclass
class Submissions:
    """What the clients sent, and what the service acknowledged."""

    sent: list[Sent] = field(default_factory=list)
    acked: dict[str, tuple[Sent, str]] = field(default_factory=dict)  # id: (sent, state)
    killed_at: float = float("inf")  # time.monotonic() of the kill
    in_flight: int = 0  # requests sent before the kill and never answered


def call_body(system: System, sent_path: str, n: int, key: str | None, wait: float) -> Any:
    url = system.url(f"{sent_path}?n={n}" + (f"&key={key}" if key else ""))
    body: dict[str, Any] = {"journeyId": "kill", "service": "action", "waitSeconds": wait,
                            "request": {"method": "POST", "url": url}}  # fmt: skip
    if key is not None:
        body["idempotencyKey"] = key
    return body


async def submit_until_killed(api: Api, system: System, into: Submissions) -> None:
    """CLIENTS clients submit calls back to back until the service dies: direct calls to
    ``/d`` and throttled ones to ``/q``, with and without idempotency keys, one at a time
    or four in a batch."""
    numbers = itertools.count()

    def one(kind: int) -> Sent:
        n = next(numbers)
        path = "d" if kind in (0, 1) else "q"
        key = f"k{n}" if kind in (0, 2) else None
        wait = 2.0 if kind == 1 else 0.0
        return Sent(n, path, call_body(system, path, n, key, wait), key)

    def acked(sent: Sent, answer: dict[str, Any]) -> None:
        assert answer["state"] in ("queued", "running", "done"), answer
        into.acked[answer["callId"]] = (sent, answer["state"])

    async def client() -> None:
        for turn in itertools.count():
            kind, began = turn % 5, time.monotonic()
            try:
                if kind == 4:  # a batch of four throttled calls, without keys
                    batch = [one(3) for _ in range(4)]
                    into.sent += batch
                    body = {"calls": [{k: v for k, v in s.body.items() if k != "waitSeconds"}
                                      for s in batch], "waitSeconds": 0}  # fmt: skip
                    status, answer = await api.request("POST", "/v1/calls:batch", body)
                    assert 200 == status, answer
                    for sent, entry in zip(batch, answer["results"], strict=True):
                        acked(sent, entry)
                else:
                    sent = one(kind)
                    into.sent.append(sent)
                    status, answer = await api.request("POST", "/v1/calls", sent.body)
                    assert status in (200, 202), answer
                    acked(sent, answer)
            except aiohttp.ClientError:  # the service died: no answer, or nobody listening
                if began < into.killed_at:
                    into.in_flight += 1
                return

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def test_sigkill_during_submission_keeps_every_acknowledged_call(
    tmp_path: Path, system: System, http: aiohttp.ClientSession
) -> None:
    """Clients submit direct and throttled calls (keys or none, single or batched) while
    the service is killed. After the restart: every acknowledged call that was queued,
    or has an idempotency key, is found and ends (queued ones by running); none is left
    running; a queued call reaches the system at least once and at most twice (the second
    time only when it had already been sent before the kill); a direct call at most once;
    sending every keyed request again calls nothing new; and each ending agrees with what
    the system received."""
    arrivals = recorded(system)
    data = tmp_path / "data"
    submissions = Submissions()
    async with serving(data) as (first, base):
        assert first.token is not None
        api = Api(base, first.token, http)
        await api.throttle(system.url("q*"))
        clients = asyncio.create_task(submit_until_killed(api, system, submissions))
        await until(lambda: len(submissions.acked) >= KILL_AFTER or clients.done(), seconds=40)
        submissions.killed_at = time.monotonic()
        await killed(first, system)
        await clients
    before_restart = len(arrivals)

    async with serving(data) as (_, base):
        api = Api(base, first.token, http)
        acked = submissions.acked
        must = [c for c, (sent, state) in acked.items() if sent.key or state == "queued"]
        may = [c for c in acked if c not in set(must)]
        seen: dict[str, set[int]] = {}
        await api.ended(must, seconds=40, seen=seen)
        # Read again once they all ended: a read racing a queued call's end may answer
        # an ending that is not the call's (see the test below).
        found = await api.results(must + may)
        # The same key again answers its first call, whether or not it was acknowledged.
        keyed = [sent for sent in submissions.sent if sent.key is not None]
        retried = await asyncio.gather(*(
            api.request("POST", "/v1/calls", sent.body | {"waitSeconds": 0}) for sent in keyed
        ))  # fmt: skip
        assert {200, 202} >= {status for status, _ in retried}, retried
        again = await api.ended([answer["callId"] for _, answer in retried], seconds=20)
    await until(lambda: system.connections() == 0)

    # The run did what it says: calls of each kind acknowledged, requests in flight at the
    # kill, queued calls still queued at the kill.
    states = Counter((sent.path, state) for sent, state in acked.values())
    assert submissions.in_flight >= 1, submissions.in_flight
    assert states[("q", "queued")] >= 100, states
    assert states[("d", "running")] + states[("d", "done")] >= 100, states
    assert any(a.path == "q" for a in arrivals[before_restart:]), "nothing was left queued"

    # Found and ended: every call that must be; a keyed one always found (its row was
    # written before it started), a queued one without key perhaps only once it ended
    # (its row may be lost in the crash; it "is recorded again when it ends"); the
    # others ended or forgotten, none left running.
    assert all({200, 202} >= seen[c] for c in must if acked[c][0].key), seen
    assert {200, 404} >= {status for status, _ in found.values()}
    times = Counter(a.call_id for a in arrivals)
    for call_id, (status, result) in found.items():
        if status == 404:
            continue
        sent, state = acked[call_id]
        ending = (result["state"], result["outcome"], (result["error"] or {}).get("message"))
        if state == "queued":  # delivered after the restart if not before: success
            assert ("done", "success", None) == ending, (sent, result)
        else:
            assert ending in {("done", "success", None),
                              ("done", "network_error", INTERRUPTED)}, (sent, result)  # fmt: skip
        if result["outcome"] == "success":
            assert times[call_id] >= 1, (sent, result)

    # At the system: direct calls at most once, queued ones at least once and at most
    # twice, the second time only for a call sent before the kill (it was running then).
    for call_id, (sent, state) in acked.items():
        if state == "queued":
            assert times[call_id] >= 1, sent
    first_seen: dict[str, int] = {}
    for index, arrival in enumerate(arrivals):
        first_seen.setdefault(arrival.call_id, index)
    for call_id, count in times.items():
        arrival = arrivals[first_seen[call_id]]
        assert count <= (2 if arrival.path == "q" else 1), (arrival, count)
        if count == 2:
            assert first_seen[call_id] < before_restart, arrival

    # Keys: the retry answers the acknowledged call; each key reached the system under
    # one call id only (the one the retry answered), a direct call at most once.
    acked_as = {sent.n: call_id for call_id, (sent, _) in acked.items()}
    for sent, (_, answer) in zip(keyed, retried, strict=True):
        call_id = answer["callId"]
        assert 200 == again[call_id][0], again[call_id]
        assert acked_as.get(sent.n, call_id) == call_id, (sent, answer)
        reached = [a for a in arrivals if a.key == sent.key]
        assert {a.call_id for a in reached} <= {call_id}, (sent, reached)
        assert len(reached) <= (2 if sent.path == "q" else 1), (sent, reached)


async def test_sigkill_while_a_queue_drains(
    tmp_path: Path, system: System, http: aiohttp.ClientSession
) -> None:
    """3,000 calls queued at 200/s, killed once a third of them arrived, restarted: every
    call arrives; a call arrives twice only if it had arrived before the kill, and no more
    of them than a queue holds slots (200: a call is claimed with a slot); and first
    arrivals keep FIFO order (none arrives after a call queued a window, 200 calls, after
    it), across the restart."""
    total, batch, kill_at = 3000, 1000, 1000
    arrivals = recorded(system)
    data = tmp_path / "data"
    ids: list[str] = []
    async with serving(data) as (first, base):
        assert first.token is not None
        api = Api(base, first.token, http)
        await api.throttle(system.url("q*"))
        for start in range(0, total, batch):  # one batch after the other: FIFO across them
            calls = [call_body(system, "q", n, None, 0) for n in range(start, start + batch)]
            for item in calls:
                del item["waitSeconds"]
            status, answer = await api.request("POST", "/v1/calls:batch",
                                               {"calls": calls, "waitSeconds": 0})  # fmt: skip
            assert 200 == status, answer
            assert {"queued", "running", "done"} >= {entry["state"] for entry in answer["results"]}
            ids += [entry["callId"] for entry in answer["results"]]
        await until(lambda: len(arrivals) >= kill_at, seconds=30)
        await killed(first, system)
    before_restart = len(arrivals)
    assert kill_at <= before_restart < total  # the kill found calls still queued

    async with serving(data) as (_, base):
        api = Api(base, first.token, http)
        # Every call ended: each one's result is written before it leaves the queue, so
        # whatever was sent again has arrived by then.
        found = await api.ended(ids, seconds=45)
    assert {("done", "success")} == {(r["state"], r["outcome"]) for _, r in found.values()}

    # Every arrival is the call its number was submitted as, and every call arrived.
    assert all(a.call_id == ids[a.n] for a in arrivals)
    times = Counter(a.n for a in arrivals)
    assert set(range(total)) == set(times)
    # Duplicates: calls running at the kill, sent again after it; each had a slot.
    twice = sorted(n for n, count in times.items() if count > 1)
    assert {2} >= {times[n] for n in twice}
    before = {a.n for a in arrivals[:before_restart]}
    assert set(twice) <= before
    assert len(twice) <= RATE, twice
    # FIFO among first arrivals, before, across and after the restart.
    seen: set[int] = set()
    ahead, late = -1, 0
    for arrival in arrivals:
        if arrival.n in seen:
            continue
        seen.add(arrival.n)
        ahead = max(ahead, arrival.n)
        late = max(late, ahead - arrival.n)
    assert late < RATE, late
