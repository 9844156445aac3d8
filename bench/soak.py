"""A soak of the service: 2,000 calls/s of mixed outcomes for 30 minutes.

``sluicegate serve --dev`` (embedded storage in a fresh temporary directory) runs as a
process of its own, and so does the external system it calls (this file, run with
``--upstream``), so the service's resident memory is its own. One client process sends
2,000 calls/s to it on an open-loop schedule: a ``POST /v1/calls:batch`` of 100 calls every
50 ms, whether or not earlier batches have been answered (a batch waits up to
:data:`WAIT_SECONDS` for its calls; one still queued then is read later with
``GET /v1/calls/{callId}``). The calls are mixed, as a journey's are (:data:`KINDS`): most
succeed, some get 500s and are retried, some a 404, some time out on a slow path under a
journey timeout of one second, some are capped by a capping config deployed below the rate
sent to its endpoint, and some wait behind a throttling config, in bursts above its rate
that the queue drains between them.

Measured, and why:

1. **Memory.** The service's RSS (``VmRSS`` of ``/proc/<pid>/status``) every
   :data:`SAMPLE_SECONDS`: at the end of the warm-up, at the end, the most, and the
   least-squares slope in between. A service meant to run for months must not grow with
   the calls it has made; at 2,000 calls/s a leak of one small object per call is about
   20 MiB per 10 minutes, so :data:`FLAT_MIB_PER_10_MIN` separates a leak from noise.
2. **Reconciliation.** Every call sent must come back with exactly one outcome, in its
   batch's answer or from ``GET /v1/calls/{callId}`` once the queues drained; the attempts
   the results state must equal the requests the external system counted, kind by kind,
   retries included; and ``GET /v1/reports/summary`` must report the same calls, attempts
   and outcomes. A call lost or counted twice anywhere shows here.
3. **The log.** The service's stdout and stderr go to a file, scanned at the end for any
   ``ERROR`` or ``Traceback`` line; every answer of the service is checked for a 5xx.
4. **The machine.** CPU of each process (service, external system, client), of every other
   process, hypervisor steal and the load average, beside the figures: the machine has two
   shared cores.

Run ``python bench/soak.py --write docs/soak.md`` (30 minutes; ``--minutes N``, or
``--quick`` for 2 minutes; ``--rate N`` where the service cannot keep up with 2,000 calls/s:
it runs on one event loop, so on one core). Every process it starts is stopped at the end,
on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shlex
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import machine
from measure import interruptible, runner
from queue_service import SERVE
from tables import Table, count, mib

RATE = 2_000  # calls per second, unless --rate says otherwise
TICK = 0.05  # seconds between batches
WAIT_SECONDS = 2.0  # a batch's waitSeconds
SAMPLE_SECONDS = 5.0
#: RSS may grow at most this much per 10 minutes after the warm-up (by the least-squares
#: slope, and from its start to its end) for the verdict "memory flat": 3.5 B per call at
#: RATE, and less than the smallest Python object (16 B) down to 440 calls/s, so that a
#: leak of one object per call exceeds it.
FLAT_MIB_PER_10_MIN = 4.0
TICKS = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve()
ORG, SANDBOX = "demo", "prod"  # the development key's
ADOBE = "/journey/orchestration"
QUEUE_DEPTH = "sluicegate_queue_depth{"  # the series of GET /metrics
START_TIMEOUT = 60.0
STOP_TIMEOUT = 120.0
DRAIN_TIMEOUT = 600.0  # after the last batch: queued calls must have ended by then
GETS_AT_ONCE = 16
MAX_REREAD = 1_000  # calls that ended unexpectedly, read again after the drain
SEED = 2027
FLAKY_RATE = 0.3  # of the requests to /flaky, answered 500
SLOW_SECONDS = 2.0  # how long /slow takes to answer; its journey's timeout is 1 s
SLOW_TIMEOUT = 1  # timeoutSeconds of the slow journey
CAP = 50  # calls per second to /capped: the capping config's maxCallsCount per 1000 ms
THROTTLE = 200  # maxThroughput of the throttling config on /queued (the lowest allowed)
#: Throttled calls come in bursts: BURST_RATE per second for BURST_SECONDS of every
#: CYCLE_SECONDS (100/s on average), so the queue fills above THROTTLE and drains between.
BURST_RATE, BURST_SECONDS, CYCLE_SECONDS = 400, 5.0, 20.0


@dataclass(frozen=True, slots=True)
class Kind:
    """One part of the mix: where its calls go, and how each may end."""

    name: str  # the external system's path: /<name>/<call number>
    weight: int  # share of the calls drawn at random (all but the throttled), in percent
    expected: frozenset[str]  # outcomes a call of this kind may end with
    upstream: str  # what the external system does, for the report
    rule: str  # the journey timeout or rule that applies, for the report

    @property
    def journey(self) -> str:
        return f"soak-{self.name}"


KINDS = {
    kind.name: kind
    for kind in [
        Kind("ok", 80, frozenset({"success"}), "200", "—"),
        Kind("flaky", 8, frozenset({"success", "http_error"}),
             f"500 for {FLAKY_RATE:.0%} of requests (seeded draw), else 200",
             "up to 3 retries (0.1, 0.2, 0.4 s apart)"),
        Kind("missing", 4, frozenset({"http_error"}), "404 (never retried)", "—"),
        Kind("slow", 2, frozenset({"timedout"}), f"200 after {SLOW_SECONDS:.0f} s",
             f"journey timeoutSeconds {SLOW_TIMEOUT}"),
        Kind("capped", 6, frozenset({"success", "capped"}), "200",
             f"capping config, maxCallsCount {CAP} per 1000 ms"),
        Kind("queued", 0, frozenset({"success"}), "200",
             f"throttling config, maxThroughput {THROTTLE}; sent {BURST_RATE}/s for "
             f"{BURST_SECONDS:.0f} s of every {CYCLE_SECONDS:.0f} s"),
    ]
}  # fmt: skip
DRAWN = [kind for kind in KINDS.values() if kind.weight]


def compose(tick: int, size: int, draw: random.Random) -> list[Kind]:
    """The kinds of the ``size`` calls of batch number ``tick``."""
    in_burst = (tick * TICK) % CYCLE_SECONDS < BURST_SECONDS
    queued = round(BURST_RATE * TICK) if in_burst else 0
    rest = draw.choices(DRAWN, weights=[kind.weight for kind in DRAWN], k=size - queued)
    return rest + [KINDS["queued"]] * queued


# ---- the external system -----------------------------------------------------------------


def upstream_app() -> web.Application:
    """Answers ``POST /<kind>/<n>`` as :data:`KINDS` says; counts every request on arrival."""
    arrivals: Counter[str] = Counter()
    draw = random.Random(SEED).random

    async def call(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        arrivals[kind] += 1
        await request.read()
        if kind == "flaky" and draw() < FLAKY_RATE:
            return web.json_response({"error": "unavailable"}, status=500)
        if kind == "missing":
            return web.json_response({"error": "not found"}, status=404)
        if kind == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"arrivals": arrivals})

    app = web.Application()
    app.router.add_post("/{kind}/{n}", call)
    app.router.add_get("/stats", stats)
    return app


async def _serve_upstream() -> None:
    server = web.AppRunner(upstream_app(), access_log=None)
    await server.setup()
    site = web.TCPSite(server, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(server.addresses[0][1], flush=True)
    await asyncio.Event().wait()  # until the parent terminates the process


@dataclass(frozen=True, slots=True)
class Process:
    """A child process of the soak, and where it can be reached."""

    process: asyncio.subprocess.Process
    base: str

    @property
    def pid(self) -> int:
        return self.process.pid


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; waits for it either way."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


@asynccontextmanager
async def upstream() -> AsyncIterator[Process]:
    """Run the external system in a process of its own for the block."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE), "--upstream", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT)).strip()
        if not line.isdigit():
            raise RuntimeError(f"the external system did not start (said {line!r})")
        yield Process(process, f"http://127.0.0.1:{int(line)}")
    finally:
        await _stop(process)


# ---- the service ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Served(Process):
    token: str  # the development key it printed


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def service(data: Path, log: Path, source: Path) -> AsyncIterator[Served]:
    """``sluicegate serve --dev`` on ``data``, its output in ``log``, until it answers; a
    graceful stop (SIGTERM) at the end of the block, whatever happens. It runs the package
    in ``source`` (a copy of ``src/``), so that edits made to the tree during a long run
    cannot reach it (a module imported late would be the edited one)."""
    port = _free_port()
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *SERVE, "--port", str(port), "--data-dir", str(data),
            stdout=out, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(source)},
        )  # fmt: skip
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while "sluicegate serving on" not in (text := _read(log)):
                if process.returncode is not None:
                    raise RuntimeError(f"sluicegate serve exited {process.returncode}:\n{text}")
                await asyncio.sleep(0.05)
        token = next((w for w in text.split() if w.startswith("sg_")), None)
        if token is None:
            raise RuntimeError(f"sluicegate serve printed no development key:\n{text}")
        yield Served(process, f"http://127.0.0.1:{port}", token)
    finally:
        await _stop(process)


@dataclass(frozen=True, slots=True)
class Api:
    """The service, as the soak's client talks to it."""

    http: aiohttp.ClientSession
    base: str
    token: str
    statuses: Counter[int] = field(default_factory=Counter)  # of every answer it gave

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "x-gw-ims-org-id": ORG,
                "x-sandbox-name": SANDBOX}  # fmt: skip

    async def send(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One request; its status and its JSON body (None when it has none)."""
        async with self.http.request(
            method, self.base + path, json=body, headers=self.headers
        ) as answer:
            self.statuses[answer.status] += 1
            text = await answer.read()
            return answer.status, json.loads(text) if text else None

    async def setup(self, system: str) -> None:
        """The slow journey's timeout, the capping config and the throttling config."""
        journey = f"/v1/journeys/{KINDS['slow'].journey}"
        status, doc = await self.send("PUT", journey, {"timeoutSeconds": SLOW_TIMEOUT})
        if status != 200:
            raise RuntimeError(f"PUT {journey}: {status} {doc}")
        capping = {"url": f"{system}/capped/*", "methods": ["POST"],
                   "services": {"action": {"rating": {"maxCallsCount": CAP,
                                                      "periodInMs": 1000}}}}  # fmt: skip
        throttling = {"name": "soak", "urlPattern": f"{system}/queued/*", "methods": ["POST"],
                      "maxThroughput": THROTTLE}  # fmt: skip
        for kind, payload in (("endpointConfigs", capping), ("throttlingConfigs", throttling)):
            status, doc = await self.send("POST", f"{ADOBE}/{kind}", payload)
            if status != 200:
                raise RuntimeError(f"creating the {kind}: {status} {doc}")
            status, doc = await self.send("POST", f"{ADOBE}/{kind}/{doc['uid']}/deploy")
            if status != 204:
                raise RuntimeError(f"deploying the {kind}: {status} {doc}")

    async def depth(self) -> int:
        """Calls waiting in the org's throttling queues (``GET /metrics``)."""
        async with self.http.get(f"{self.base}/metrics", headers=self.headers) as answer:
            self.statuses[answer.status] += 1
            text = await answer.text()
            if answer.status != 200:
                raise RuntimeError(f"GET /metrics: {answer.status} {text}")
        fields = (line.split() for line in text.splitlines())
        return sum(int(float(f[-1])) for f in fields if f and f[0].startswith(QUEUE_DEPTH))


# ---- the client ----------------------------------------------------------------------------


@dataclass
class Unexpected:
    """A call that ended with an outcome its kind should not have, and what a GET after
    the drain said of it."""

    call_id: str
    kind: str
    outcome: str
    via: str  # "batch" or "GET"
    view: str  # the result view, as JSON
    again: str | None = None  # the outcome read again after the drain

    def line(self) -> str:
        return (f"{self.kind} {self.call_id}: {self.outcome} (in its {self.via} answer; read "
                f"again after the drain: {self.again}) {self.view}")  # fmt: skip


@dataclass
class Tally:
    """What the client sent and what the service answered, kind by kind."""

    sent: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)  # entries of batch answers
    refused: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # "<status> <code>" of each
    by_get: Counter[str] = field(default_factory=Counter)  # outcomes read after a 202 entry
    lost: Counter[str] = field(default_factory=Counter)  # unknown to GET /v1/calls/{callId}
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    slots: Counter[str] = field(default_factory=Counter)
    unexpected: list[Unexpected] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # requests that got no answer
    latencies: list[float] = field(default_factory=list)  # seconds, per batch
    lag: float = 0.0  # the most a batch left after its time in the schedule
    most_inflight: int = 0  # batches sent and not yet answered, at most

    def record(self, kind: Kind, view: dict[str, Any], via: str) -> None:
        """A call's result view, read ``via`` its batch's answer or a GET: its outcome and
        its attempts."""
        outcome = str(view["outcome"])
        self.outcomes.setdefault(kind.name, Counter())[outcome] += 1
        self.attempts[kind.name] += int(view["attempts"])
        self.slots[kind.name] += int(view["slots"])
        if outcome not in kind.expected:
            self.unexpected.append(Unexpected(str(view["callId"]), kind.name, outcome, via,
                                              json.dumps(view)))  # fmt: skip

    def ended(self, kind: str) -> int:
        return sum(self.outcomes.get(kind, Counter()).values())


class Client:
    """Sends the schedule open loop, and reads the calls a batch left queued."""

    def __init__(self, api: Api, system: str, rate: int) -> None:
        self.api = api
        self.system = system
        self.size = round(rate * TICK)  # calls per batch
        self.tally = Tally()
        self.pending: deque[tuple[float, str, Kind]] = deque()  # (when to ask, id, kind)
        self.inflight = 0  # batches sent and not answered
        #: Calls in the throttling queue, at most since the last sample (None: no reading,
        #: as when the service is too busy to answer GET /metrics within the interval).
        self.most_queued: int | None = None
        self._numbers = 0
        self._draw = random.Random(SEED)
        self._gets = asyncio.Semaphore(GETS_AT_ONCE)
        self._asking: set[asyncio.Task[None]] = set()  # GETs in flight
        self._batches: set[asyncio.Task[None]] = set()  # batches in flight

    async def drive(self, seconds: float) -> None:
        """A batch every TICK for ``seconds``, on schedule; returns after the last one left
        (:meth:`settled` waits for the answers)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        for tick in range(round(seconds / TICK)):
            late = loop.time() - (started + tick * TICK)
            if late < 0:
                await asyncio.sleep(-late)
            self.tally.lag = max(self.tally.lag, late)
            batch = asyncio.create_task(self._batch(compose(tick, self.size, self._draw)))
            self._batches.add(batch)
            batch.add_done_callback(self._batches.discard)

    async def _batch(self, kinds: list[Kind]) -> None:
        calls = []
        for kind in kinds:
            self._numbers += 1
            url = f"{self.system}/{kind.name}/{self._numbers}"
            calls.append({"journeyId": kind.journey, "service": "action",
                          "request": {"method": "POST", "url": url, "body": "{}"}})  # fmt: skip
            self.tally.sent[kind.name] += 1
        self.inflight += 1
        self.tally.most_inflight = max(self.tally.most_inflight, self.inflight)
        started = time.perf_counter()
        try:
            status, doc = await self.api.send(
                "POST", "/v1/calls:batch", {"calls": calls, "waitSeconds": WAIT_SECONDS}
            )
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.tally.failures.append(f"POST /v1/calls:batch: {exc!r}")
            return
        finally:
            self.inflight -= 1
        self.tally.latencies.append(time.perf_counter() - started)
        if status != 200:
            self.tally.failures.append(f"POST /v1/calls:batch answered {status}: {doc}")
            return
        ask_at = time.monotonic() + 1.0
        for kind, entry in zip(kinds, doc["results"], strict=True):
            self.tally.answered[kind.name] += 1
            if "outcome" in entry:
                self.tally.record(kind, entry, "batch")
            elif entry.get("state") in ("queued", "running"):
                self.pending.append((ask_at, entry["callId"], kind))
            else:
                self.tally.refused[kind.name] += 1
                self.tally.refusals[f"{entry.get('status')} {entry.get('code')}"] += 1

    async def resolve(self) -> None:
        """Forever: ask for each call left queued, once a second until it has ended."""
        while True:
            while self.pending and self.pending[0][0] <= time.monotonic():
                _, call_id, kind = self.pending.popleft()
                await self._gets.acquire()
                task = asyncio.create_task(self._get(call_id, kind))
                self._asking.add(task)
                task.add_done_callback(self._asking.discard)
            await asyncio.sleep(0.1)

    async def _get(self, call_id: str, kind: Kind) -> None:
        try:
            status, doc = await self.api.send("GET", f"/v1/calls/{call_id}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.tally.failures.append(f"GET /v1/calls/{call_id}: {exc!r}")
            status, doc = 0, None
        finally:
            self._gets.release()
        if status == 200:
            self.tally.record(kind, doc, "GET")
            self.tally.by_get[kind.name] += 1
        elif status == 404:
            self.tally.lost[kind.name] += 1
        else:  # 202, or a failure: ask again
            self.pending.append((time.monotonic() + 1.0, call_id, kind))

    async def reread(self) -> None:
        """Read every call that ended unexpectedly again (after the drain: to tell a
        wrong answer that later reads correct from a wrong result)."""
        for odd in self.tally.unexpected[:MAX_REREAD]:
            status, doc = await self.api.send("GET", f"/v1/calls/{odd.call_id}")
            odd.again = str(doc.get("outcome") or doc.get("state")) if status < 300 else (
                f"{status} {doc}")  # fmt: skip

    async def settled(self) -> bool:
        """Wait until no call is left to ask for (True), or DRAIN_TIMEOUT (False)."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while self.pending or self._asking or self._batches:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True


# ---- samples -------------------------------------------------------------------------------


def _status_bytes(pid: int, name: str) -> int:
    """A ``kB`` value of /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {name} for process {pid}")


def _machine_cpu() -> tuple[float, float, float]:
    """CPU seconds the whole machine spent in processes (user and system), in interrupts
    (irq and softirq: the loopback traffic's receive path mostly), and stolen."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system) / TICKS, (irq + softirq) / TICKS, steal / TICKS


def _load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


def _disk(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds since the first batch (negative before it)
    rss: int  # bytes, the service's VmRSS
    service_cpu: float  # CPU seconds of each process so far
    upstream_cpu: float
    client_cpu: float
    processes: float  # CPU seconds of the whole machine so far: every process
    interrupts: float
    steal: float
    load1: float  # the 1-minute load average
    depth: int | None  # calls in the throttling queue, at most since the sample before
    sent: int  # calls sent so far


async def sample_forever(
    samples: list[Sample], served: Served, system: Process, client: Client, zero: float
) -> None:
    """Append a :class:`Sample` every SAMPLE_SECONDS, from now on."""
    while True:
        processes, interrupts, steal = _machine_cpu()
        samples.append(Sample(
            at=time.monotonic() - zero,
            rss=_status_bytes(served.pid, "VmRSS"),
            service_cpu=machine.cpu_seconds(served.pid),
            upstream_cpu=machine.cpu_seconds(system.pid),
            client_cpu=time.process_time(),
            processes=processes, interrupts=interrupts, steal=steal,
            load1=_load1(),
            depth=client.most_queued,
            sent=sum(client.tally.sent.values()),
        ))  # fmt: skip
        client.most_queued = None
        await asyncio.sleep(SAMPLE_SECONDS - (time.monotonic() - zero) % SAMPLE_SECONDS)


async def watch_queue(client: Client) -> None:
    """Forever: the queue's depth every second (apart from the samples, which must not
    wait for the service to answer)."""
    while True:
        with contextlib.suppress(aiohttp.ClientError, RuntimeError):  # counted in statuses
            depth = await client.api.depth()
            client.most_queued = max(client.most_queued or 0, depth)
        await asyncio.sleep(1.0)


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Memory:
    """The service's RSS over the sending, after its warm-up."""

    start: int  # bytes, the first sample after the warm-up
    end: int  # the last sample while sending
    most: int  # the highest sample while sending
    peak: int  # VmHWM at the end
    drained: int  # after the queues drained
    slope: float  # bytes per second, least squares over the samples after the warm-up
    seconds: float  # from the start sample to the end sample

    @property
    def allowed(self) -> float:
        """Bytes of growth "memory flat" allows over these seconds."""
        return FLAT_MIB_PER_10_MIN * 2**20 * max(1.0, self.seconds / 600)

    @property
    def flat(self) -> bool:
        return self.end - self.start <= self.allowed and self.slope * self.seconds <= self.allowed


def memory(samples: Sequence[Sample], warmup: float, sending: float, peak: int) -> Memory:
    window = [s for s in samples if warmup <= s.at <= sending]
    if len(window) < 2:
        raise RuntimeError("too few samples after the warm-up: run longer")
    fit = statistics.linear_regression([s.at for s in window], [float(s.rss) for s in window])
    return Memory(
        start=window[0].rss,
        end=window[-1].rss,
        most=max(s.rss for s in samples if 0 <= s.at <= sending),
        peak=peak,
        drained=samples[-1].rss,
        slope=fit.slope,
        seconds=window[-1].at - window[0].at,
    )


@dataclass(frozen=True, slots=True)
class Soak:
    """Everything the run yields."""

    facts: dict[str, str]  # the machine and the software (machine.facts), at the start
    rate: int  # calls per second, as scheduled
    minutes: float
    warmup: float  # seconds
    sending: float  # seconds from the first batch to the last
    drain: float  # seconds from then until every call had ended
    settled: bool  # every call ended before DRAIN_TIMEOUT
    tally: Tally
    statuses: Counter[int]  # of every answer of the service
    arrivals: dict[str, int]  # requests the external system counted, by kind
    reports: dict[str, dict[str, Any]]  # GET /v1/reports/summary, by kind
    final_depth: int
    samples: list[Sample]
    memory: Memory
    service_cpu: float  # over the whole run
    exit_code: int | None
    errors: list[str]  # ERROR and Traceback lines of the service's log
    warnings: int  # WARNING lines
    disk: int  # bytes of the data directory at the end
    seconds: float  # the whole run

    @property
    def batch(self) -> int:
        """Calls per batch."""
        return round(self.rate * TICK)

    @property
    def calls(self) -> int:
        return sum(self.tally.sent.values())

    def verdicts(self) -> list[tuple[str, bool, str]]:
        """(verdict, held, the figures behind it)."""
        t, kinds = self.tally, list(KINDS)
        rate = self.samples_rate()
        refused = sum(t.refused.values())
        unanswered = sum(t.sent[k] - t.answered[k] for k in kinds)
        not_ended = sum(t.sent[k] - t.ended(k) - t.refused[k] for k in kinds)
        attempts_off = [
            f"{k} (attempts {t.attempts[k]:,}, arrivals {self.arrivals.get(k, 0):,}, slots "
            f"{t.slots[k]:,})"
            for k in kinds
            if t.attempts[k] != self.arrivals.get(k, 0)
        ]
        extra = sum(n for k, n in self.arrivals.items() if k not in KINDS)
        reports_off = [k for k in kinds if not self._reported_alike(k)]
        statuses = self.statuses
        fives = sum(n for status, n in statuses.items() if status >= 500)
        m = self.memory
        return [
            ("schedule held", rate >= 0.99 * self.rate,
             f"{rate:,.0f} calls/s sent (of {self.rate:,}); a batch left at most "
             f"{t.lag * 1000:.0f} ms late"),
            ("service kept up", self.kept_up and refused == 0,
             f"{_latency(t)}; 99% within waitSeconds + 1 s ({WAIT_SECONDS + 1:g} s) needed; "
             f"{refused:,} calls refused"
             + "".join(f", {n:,} {why}" for why, n in t.refusals.most_common())),
            ("memory flat", m.flat,
             f"{mib(m.end - m.start)} from {mib(m.start)} to {mib(m.end)} over "
             f"{m.seconds / 60:.1f} min; slope {mib(m.slope * 600)} per 10 min; allowed "
             f"{mib(m.allowed)} ({FLAT_MIB_PER_10_MIN:g} MiB per 10 min)"),
            ("every call accounted for",
             unanswered == not_ended == sum(t.lost.values()) == 0 and not t.failures
             and self.settled,
             f"{self.calls:,} sent, {self.calls - unanswered:,} in batch answers: "
             f"{self.calls - not_ended - refused:,} ended "
             f"({sum(t.by_get.values()):,} of them read by GET after a queued entry), "
             f"{refused:,} refused; unknown to GET {sum(t.lost.values())}, requests "
             f"unanswered {len(t.failures)}"),
            ("outcomes as expected", not t.unexpected, _oddities(t.unexpected)),
            ("attempts == external system's arrivals", not attempts_off and extra == 0,
             f"{sum(t.attempts.values()):,} attempts in the results, "
             f"{sum(self.arrivals.values()):,} arrivals"
             + (f"; differ for {', '.join(attempts_off)}" if attempts_off else "")),
            ("reports agree", not reports_off,
             "`GET /v1/reports/summary` per journey against the results: calls, attempts "
             "and outcomes" + (f"; differ for {', '.join(reports_off)}" if reports_off else "")),
            ("queue drained", self.final_depth == 0 and self.settled,
             f"depth {self.final_depth} at the end; every call ended {self.drain:.1f} s after "
             "the last batch left"),
            ("no error logged", not self.errors,
             f"{len(self.errors)} ERROR/Traceback lines, {self.warnings} WARNING lines"),
            ("no 5xx answered", fives == 0,
             f"{sum(statuses.values()):,} answers: "
             + ", ".join(f"{n:,} × {s}" for s, n in sorted(statuses.items()))),
            ("clean stop", self.exit_code == 0, f"SIGTERM; exit code {self.exit_code}"),
        ]  # fmt: skip

    @property
    def kept_up(self) -> bool:
        """99% of the batches answered within their waitSeconds and 1 s."""
        latencies = sorted(self.tally.latencies)
        return bool(latencies) and _p99(latencies) <= WAIT_SECONDS + 1

    def _reported_alike(self, kind: str) -> bool:
        report = self.reports.get(kind, {})
        return (
            report.get("calls") == self.tally.ended(kind)
            and report.get("attempts") == self.tally.attempts[kind]
            and report.get("outcomes", {}) == dict(self.tally.outcomes.get(kind, {}))
        )

    def samples_rate(self) -> float:
        sent = [s for s in self.samples if 0 <= s.at <= self.minutes * 60]
        if len(sent) < 2:
            return self.calls / (self.minutes * 60)
        return (sent[-1].sent - sent[0].sent) / (sent[-1].at - sent[0].at)


# ---- the run -------------------------------------------------------------------------------


def warmup_seconds(minutes: float) -> float:
    """The first 10% of the sending, at least 15 s and at most 3 minutes."""
    return min(180.0, max(15.0, minutes * 6))


async def soak(rate: int, minutes: float, keep_log: Path | None) -> Soak:
    """Start both processes, send ``rate`` calls/s for ``minutes``, drain, reconcile, stop
    both."""
    started = time.perf_counter()
    facts = machine.facts()  # the commit now: the tree may change during the run
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="sluicegate-soak-") as tmp:
        log, source = Path(tmp) / "service.log", Path(tmp) / "src"
        shutil.copytree(machine.ROOT / "src", source,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        try:
            async with (
                upstream() as system,
                service(Path(tmp) / "data", log, source) as served,
            ):
                # Idle connections are dropped before the service's keep-alive (5 s) ends,
                # so that no request is sent on one the service is closing meanwhile.
                connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=2.0)
                # Late answers are waited for: a call must not go unaccounted for because
                # the client stopped listening.
                timeout = aiohttp.ClientTimeout(total=DRAIN_TIMEOUT)
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                    api = Api(http, served.base, served.token)
                    await api.setup(system.base)
                    client = Client(api, system.base, rate)
                    since = math.floor(time.time()) - 1
                    zero = time.monotonic()
                    tasks = [asyncio.create_task(sample_forever(samples, served, system,
                                                                client, zero)),
                             asyncio.create_task(watch_queue(client)),
                             asyncio.create_task(client.resolve())]  # fmt: skip
                    try:
                        _step(f"sending {rate:,} calls/s for {minutes:g} min")
                        await client.drive(minutes * 60)
                        sending = time.monotonic() - zero
                        _step("waiting for queued calls to end")
                        settled = await client.settled()
                        while settled and await api.depth():  # noqa: ASYNC110
                            await asyncio.sleep(0.2)
                        drain = time.monotonic() - zero - sending
                        await asyncio.sleep(SAMPLE_SECONDS)  # one sample once drained
                        await client.reread()
                    finally:
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
                    _step("reconciling")
                    final_depth = await api.depth()
                    async with http.get(f"{system.base}/stats") as answer:
                        arrivals = (await answer.json())["arrivals"]
                    reports = {}
                    for kind in KINDS.values():
                        query = f"?journeyId={kind.journey}&from={since}"
                        status, reports[kind.name] = await api.send(
                            "GET", f"/v1/reports/summary{query}"
                        )
                        if status != 200:
                            raise RuntimeError(f"GET /v1/reports/summary: {status}")
                    peak = _status_bytes(served.pid, "VmHWM")
                    service_cpu = machine.cpu_seconds(served.pid)
            disk = _disk(Path(tmp) / "data")
            lines = _read(log).splitlines()
        finally:
            if keep_log is not None and log.exists():
                shutil.copyfile(log, keep_log)
    return Soak(
        facts=facts,
        rate=rate,
        minutes=minutes,
        warmup=warmup_seconds(minutes),
        sending=sending,
        drain=drain,
        settled=settled,
        tally=client.tally,
        statuses=api.statuses,
        arrivals=arrivals,
        reports=reports,
        final_depth=final_depth,
        samples=samples,
        memory=memory(samples, warmup_seconds(minutes), sending, peak),
        service_cpu=service_cpu,
        exit_code=served.process.returncode,
        errors=[line for line in lines if "ERROR" in line or "Traceback" in line],
        warnings=sum("WARNING" in line for line in lines),
        disk=disk,
        seconds=time.perf_counter() - started,
    )


def _step(message: str) -> None:
    print(f"… {message}", file=sys.stderr, flush=True)


# ---- the report ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """CPU between two samples, in cores (CPU seconds per wall second; the machine has
    ``cpus`` of them), and the 1-minute load average meanwhile."""

    service: float
    upstream: float
    client: float
    others: float  # every other process (ksoftirqd, and another engineer's work, included)
    interrupts: float
    steal: float
    load1: float  # the highest 1-minute load average sampled

    @classmethod
    def between(cls, first: Sample, last: Sample, seen: Sequence[Sample]) -> Load:
        wall = last.at - first.at
        ours = [last.service_cpu - first.service_cpu, last.upstream_cpu - first.upstream_cpu,
                last.client_cpu - first.client_cpu]  # fmt: skip
        return cls(
            service=ours[0] / wall,
            upstream=ours[1] / wall,
            client=ours[2] / wall,
            others=max(0.0, last.processes - first.processes - sum(ours)) / wall,
            interrupts=(last.interrupts - first.interrupts) / wall,
            steal=(last.steal - first.steal) / wall,
            load1=max(s.load1 for s in seen),
        )

    def cells(self) -> list[str]:
        values = [self.service, self.upstream, self.client, self.others, self.interrupts,
                  self.steal]  # fmt: skip
        return [f"{value:.2f}" for value in values] + [f"{self.load1:.2f}"]


LOAD_HEADERS = ["service", "external system", "client", "other processes", "interrupts",
                "steal", "load average (1 min, most)"]  # fmt: skip


def sending_load(result: Soak) -> Load:
    window = [s for s in result.samples if 0 <= s.at <= result.sending]
    return Load.between(window[0], window[-1], window)


def timeline(result: Soak) -> Table:
    """One row per minute (per 15 s in runs under 5 minutes), the drain in one last row.
    A dash in "queued (most)": no reading of the queue's depth was answered meanwhile."""
    step = 60.0 if result.minutes >= 5 else 15.0
    groups: dict[int, list[Sample]] = {}
    for s in result.samples:
        if s.at > result.sending:
            groups.setdefault(-1, []).append(s)
        elif s.at > 0:
            groups.setdefault(math.ceil(s.at / step - 1e-6) - 1, []).append(s)
    rows, previous = [], result.samples[0]
    for key, seen in [*sorted((k, v) for k, v in groups.items() if k >= 0),
                      *([(-1, groups[-1])] if -1 in groups else [])]:  # fmt: skip
        last = seen[-1]
        wall = last.at - previous.at
        label = "drain" if key < 0 else f"{key * step / 60:g}–{(key + 1) * step / 60:g}"
        sent = "—" if key < 0 else count((last.sent - previous.sent) / wall)
        depths = [s.depth for s in seen if s.depth is not None]
        rows.append([
            label, sent, mib(last.rss), count(max(depths)) if depths else "—",
            *Load.between(previous, last, seen).cells(),
        ])  # fmt: skip
        previous = last
    return Table(["minutes", "calls/s sent", "service RSS", "queued (most)", *LOAD_HEADERS],
                 rows)  # fmt: skip


def mix(result: Soak) -> Table:
    t, rows = result.tally, []
    for kind in KINDS.values():
        outcomes = t.outcomes.get(kind.name, Counter())
        report = result.reports.get(kind.name, {})
        rows.append([
            f"`/{kind.name}/<n>`", kind.upstream, kind.rule, count(t.sent[kind.name]),
            f"{t.sent[kind.name] / max(1, result.calls):.1%}",
            ", ".join([f"{n:,} {o}" for o, n in outcomes.most_common()]
                      + ([f"{t.refused[kind.name]:,} refused"] if t.refused[kind.name] else [])),
            count(t.by_get[kind.name]), count(t.attempts[kind.name]),
            count(result.arrivals.get(kind.name, 0)),
            f"{report.get('calls', 0):,} / {report.get('attempts', 0):,}",
        ])  # fmt: skip
    return Table(
        ["path", "the external system answers", "rule", "calls sent", "share",
         "outcomes (per call)", "of which read by GET", "attempts (results)",
         "arrivals (external system)", "reported calls / attempts"], rows,
    )  # fmt: skip


def memory_table(m: Memory) -> Table:
    return Table(["", "service RSS"], [
        ["at the end of the warm-up (start)", mib(m.start)],
        ["at the end of the sending (end)", mib(m.end)],
        ["growth, start to end", mib(m.end - m.start)],
        ["slope, least squares after the warm-up", f"{mib(m.slope * 600)} per 10 min"],
        ["most sampled while sending", mib(m.most)],
        ["peak (VmHWM)", mib(m.peak)],
        ["once every queued call had ended", mib(m.drained)],
    ])  # fmt: skip


def _oddities(found: Sequence[Unexpected]) -> str:
    """Calls that ended unexpectedly, counted by kind, outcome, where it was read and what
    a read after the drain said."""
    if not found:
        return "none"
    groups = Counter(
        f"{odd.kind} {odd.outcome} (in its {odd.via} answer; read again after the drain: "
        f"{odd.again or 'not read'})"
        for odd in found
    )
    return f"{len(found):,} unexpected: " + "; ".join(
        f"{n:,} {what}" for what, n in groups.most_common()
    )


def _p99(ordered: Sequence[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _latency(tally: Tally) -> str:
    latencies = sorted(tally.latencies)
    if not latencies:
        return "no batch was answered"
    return (f"{len(latencies):,} batches answered in {statistics.median(latencies):.2f} s "
            f"(median), {_p99(latencies):.2f} s (p99), {latencies[-1]:.2f} s (most); at most "
            f"{tally.most_inflight} batches in flight")  # fmt: skip


def how(result: Soak) -> str:
    asked = "" if result.rate == RATE else f" (`--rate`; the default is {RATE:,})"
    return (
        f"The client sent {result.rate:,} calls/s{asked} for {result.minutes:g} minutes on an "
        "open-loop schedule with the **batch API**: one `POST /v1/calls:batch` of "
        f"{result.batch} calls every {TICK * 1000:.0f} ms, each sent on time whether or not "
        f"earlier ones were answered, `waitSeconds` {WAIT_SECONDS:g}; a call still queued or "
        "running in its batch's answer was read with `GET /v1/calls/{callId}` once a second "
        "until it ended. One client process sustains this with a few hundredths of a core "
        f"({sending_load(result).client:.2f} here), where single calls would need "
        f"{result.rate:,} requests/s of it and cost the service more per call. Every call "
        "has a URL of its own (its number in the path), as real calls carry ids, so the "
        "service's caches keyed by URL keep turning over. The first "
        f"{result.warmup:.0f} s of the sending are the warm-up. The service runs a copy of "
        "`src/` taken at the start."
    )


def text(result: Soak) -> str:
    held = [f"  {'ok ' if ok else 'NO '} {name}: {why}" for name, ok, why in result.verdicts()]
    m, load = result.memory, sending_load(result)
    return "\n".join([
        f"soak: {result.minutes:g} min at {result.rate:,} calls/s, batch API ({result.batch} "
        "calls per "
        f"POST /v1/calls:batch every {TICK * 1000:.0f} ms), {result.calls:,} calls",
        *held,
        f"memory: RSS start {mib(m.start)}, end {mib(m.end)}, max {mib(m.most)} "
        f"(VmHWM {mib(m.peak)}), slope {mib(m.slope * 600)} per 10 min",
        "load while sending, cores: " + ", ".join(
            f"{name} {cell}" for name, cell in zip(LOAD_HEADERS, load.cells(), strict=True)),
        f"batches: {_latency(result.tally)}",
        *(f"  unexpected: {odd.line()[:400]}" for odd in result.tally.unexpected[:10]),
        *(f"  failed request: {line}" for line in result.tally.failures[:10]),
        *(f"  log: {line}" for line in result.errors[:20]),
    ])  # fmt: skip


def _block(lines: Iterable[str]) -> str:
    """Lines as one fenced block of Markdown."""
    return "\n".join(["```", *lines, "```"])


def markdown(result: Soak, command: str) -> str:
    """docs/soak.md."""
    facts = result.facts
    verdicts = Table(["verdict", "held", "figures"],
                     [[name, "yes" if ok else "**NO**", why.replace("|", "\\|")]
                      for name, ok, why in result.verdicts()])  # fmt: skip
    odd = result.tally.unexpected
    examples = (
        []
        if not odd
        else [
            "The first of them, as the service answered:",
            _block(o.line()[:600] for o in odd[:10]),
        ]
    )
    log = ["None."] if not result.errors else [_block(result.errors[:50])]
    parts = [
        f"# Soak: the service at {result.rate:,} calls/s of mixed outcomes",
        "<!-- Written by bench/soak.py; run it rather than editing by hand. -->",
        f"Written by `{command}` in {result.seconds / 60:.0f} min "
        f"({facts['date (UTC)']} UTC, sluicegate {facts['sluicegate']}).",
        "`sluicegate serve --dev` (SQLite in a fresh temporary directory) and the external "
        "system it calls (`bench/soak.py --upstream`, aiohttp.web) each run in a process of "
        "their own, so the service's RSS is its own. " + how(result),
        "## Verdicts",
        verdicts.markdown(),
        "## The mix",
        "Each kind of call has a journey of its own (`soak-<kind>`), so that "
        "`GET /v1/reports/summary?journeyId=soak-<kind>` can be compared with the results "
        "kind by kind. Attempts are summed over the calls' result views; arrivals are the "
        "requests the external system counted as each arrived, retries included. "
        f"{_latency(result.tally).capitalize()} (a batch waits for its slowest call, up to "
        "`waitSeconds`).",
        mix(result).markdown(),
        "## Calls that ended unexpectedly",
        "A call whose outcome its kind should not have (a `timedout` on `/ok`...) is read "
        "again with `GET /v1/calls/{callId}` once every call has ended: "
        f"{_oddities(odd)}.",
        *examples,
        "## Memory",
        f"The service's `VmRSS` (`/proc/<pid>/status`) every {SAMPLE_SECONDS:g} s. "
        f'"Memory flat" holds when RSS grew by at most {FLAT_MIB_PER_10_MIN:g} MiB per '
        "10 minutes after the warm-up (at least that much for a shorter window), both from "
        f"start to end and by the least-squares slope: at {result.rate:,} calls/s that is "
        f"{FLAT_MIB_PER_10_MIN * 2**20 / (result.rate * 600):.1f} B per call, less than the "
        "smallest Python object, so a leak of one object per call fails it. The data "
        f"directory held {mib(result.disk)} at the end "
        f"({result.disk / max(1, result.calls):.0f} B per call: results are kept 7 days).",
        memory_table(result.memory).markdown(),
        "## Load on the machine",
        "CPU in cores (CPU seconds per wall second) while sending; the machine has "
        f'{facts["cpus (nproc)"]} shared cores. "Other processes" is the machine\'s user '
        "and system time less the three processes of the soak: another engineer's work, "
        'and the kernel threads that carry loopback traffic; "interrupts" is irq and '
        "softirq time, mostly the loopback traffic's. The service used "
        f"{result.service_cpu:,.0f} CPU seconds in all, "
        f"{result.service_cpu / max(1, result.calls) * 1e6:.0f} µs per call; it runs on one "
        "event loop, so one core is all it can use.",
        Table(LOAD_HEADERS, [sending_load(result).cells()]).markdown(),
        Table(["", "value"], [[k, v] for k, v in facts.items()]).markdown(),
        "## Timeline",
        "CPU in cores as above, per interval; the service's RSS at its end; a dash under "
        '"queued (most)": the service answered no `GET /metrics` within the interval.',
        timeline(result).markdown(),
        "## The service's log",
        f"Its stdout and stderr, scanned for `ERROR` and `Traceback`: {len(result.errors)} "
        f"lines ({result.warnings} `WARNING` lines).",
        *log,
    ]
    return "\n\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to send")
    parser.add_argument("--quick", action="store_true", help="2 minutes")
    parser.add_argument("--rate", type=int, default=RATE, help="calls per second")
    parser.add_argument("--write", metavar="PATH", type=Path, help="write the Markdown report")
    parser.add_argument("--log", metavar="PATH", type=Path, help="keep the service's log")
    parser.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        # Ctrl-C reaches the whole process group; the parent stops this process itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with runner() as loop:
            loop.run(_serve_upstream())
        return 0
    interruptible()
    minutes = 2.0 if args.quick else args.minutes
    with runner() as loop:
        result = loop.run(soak(args.rate, minutes, args.log))
    print(text(result))
    if args.write is not None:
        command = shlex.join([".venv/bin/python", "bench/soak.py", *sys.argv[1:]])
        args.write.write_text(markdown(result, command))
        print(f"\nwritten to {args.write}")
    return 0 if all(ok for _, ok, _ in result.verdicts()) else 1


if __name__ == "__main__":
    sys.exit(main())
