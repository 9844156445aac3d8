"""The results of one benchmark run, judged against the targets, as text and Markdown.

Sections 1 to 3 (limiter decisions, calls per second, calls with failures) are written
here; section 4, the queue at scale, by :mod:`queue_report`, whose targets join the one
targets table. Tables and the way each kind of value is written are in :mod:`tables`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import decisions
import loopback
import queue_report
import queue_results
import service
import throughput
from machine import Interference
from measure import Series
from tables import Table, Target, count, other_cpu, ratio, span, us


@dataclass(frozen=True, slots=True)
class Plan:
    """How much work each measurement does."""

    name: str
    decisions: int
    calls: int
    flaky_calls: int
    repeats: int
    queued_calls: int  # queued through gate.submit (section 4)
    queued_http_calls: int  # queued through POST /v1/calls
    drain_seconds: float  # of arrivals judged after each restart


@dataclass(frozen=True, slots=True)
class Results:
    """Every figure of one run."""

    plan: Plan
    limiters: list[decisions.Contender]  # exact window, slot store, aiolimiter
    plain: tuple[throughput.Contender, throughput.Contender]  # sluicegate, bare aiohttp
    core_us: Series  # sluicegate's CPU per call with no network
    flaky: tuple[throughput.Contender, throughput.Contender]  # sluicegate, aiohttp+tenacity
    reqwest: tuple[throughput.Contender, throughput.Contender]  # sluicegate on reqwest, bare
    queue: queue_results.Scale
    service: service.ServiceResults
    seconds: float
    interference: Interference | None


#: Where the limiter shared by several instances is measured (``make bench`` runs both).
SHARED = (
    "The Redis limiter that several instances share, against `limits` (moving window), "
    "`pyrate-limiter` and `throttled-py` on the same Redis, with 4 processes: decisions per "
    "second and the most grants in any 1000 ms window, in "
    "[benchmarks-redis.md](benchmarks-redis.md) (`bench/redis_limiters.py`); what a call "
    "costs Redis, in [scaling.md](scaling.md) (`bench/redis_costs.py`). A 30-minute soak "
    "of the service (mixed outcomes through the batch API; memory, reconciliation of every "
    "outcome against the requests the external system counted, errors logged) in "
    "[soak.md](soak.md) (`bench/soak.py`, run on its own: `python bench/soak.py --write "
    "docs/soak.md`)."
)


def added_cpu_us(results: Results) -> float:
    """Client CPU per call that sluicegate adds to a bare aiohttp request."""
    library, bare = results.plain
    return library.cpu_us.median - bare.cpu_us.median


def _speedup(
    label: str, fast: throughput.Contender, slow: throughput.Contender, goal: float
) -> Target:
    """``fast`` against ``slow`` in calls/s, and in the inverse ratio of CPU per call."""
    return Target(
        label,
        fast.rate.median / slow.rate.median,
        goal,
        True,
        ratio,
        by_cpu=slow.cpu_us.median / fast.cpu_us.median,
    )


def targets(results: Results) -> list[Target]:
    window, store, _ = results.limiters
    (library, bare), (flaky_library, flaky_tenacity) = results.plain, results.flaky
    return [
        Target(f"decisions/s, {store.name}", store.rate.median, 500_000, True, count),
        Target(f"decisions/s, {window.name}", window.rate.median, 500_000, True, count),
        _speedup("calls/s, sluicegate (aiohttp transport, the default) ÷ bare aiohttp",
                 library, bare, 0.8),
        _speedup("calls/s, sluicegate (reqwest transport, opt-in) ÷ bare aiohttp",
                 results.reqwest[0], results.reqwest[1], 1.2),
        Target("client CPU added per call by sluicegate ÷ bare aiohttp's per request",
               added_cpu_us(results) / bare.cpu_us.median, 0.2, False, ratio),
        _speedup(
            f"calls/s with {loopback.FAILURE_RATE:.0%} failing, sluicegate ÷ aiohttp + tenacity",
            flaky_library,
            flaky_tenacity,
            2.0,
        ),
        *queue_report.targets(results.queue),
        *service.targets(results.service),
    ]  # fmt: skip


def _limiter_table(results: Results) -> Table:
    return Table(
        ["contender", "decisions/s (median)", "min … max", "granted", "most grants in 1000 ms"],
        [
            [
                limiter.name,
                count(limiter.rate.median),
                span(limiter.rate, count),
                f"{limiter.granted:.1%}",
                str(limiter.max_in_window),
            ]
            for limiter in results.limiters
        ],
    )


def _calls_table(contenders: Sequence[throughput.Contender]) -> Table:
    return Table(
        [
            "contender",
            "calls/s (median)",
            "min … max",
            "client CPU/call",
            "client load",
            "server load",
            "attempts/call",
            "attempts failed",
            "failed calls",
        ],
        [
            [
                contender.name,
                count(contender.rate.median),
                span(contender.rate, count),
                us(contender.cpu_us.median),
                f"{contender.client_load.median:.2f}",
                f"{contender.server_load.median:.2f}",
                f"{contender.attempts_per_call:.3f}",
                f"{contender.failed_attempts:.1%}",
                str(contender.failed),
            ]
            for contender in contenders
        ],
    )


def _targets_table(results: Results) -> Table:
    headers = ["measure", "result", "by client CPU per call", "target", ""]
    return Table(headers, [target.row() for target in targets(results)])


def _interference(results: Results) -> str:
    return other_cpu(results.interference, "the run")


def text(results: Results) -> str:
    """The report for a terminal."""
    plan = results.plan
    return "\n\n".join(
        [
            f"sluicegate benchmarks, {plan.name} run: a warm-up, then {plan.repeats} timed runs "
            "per contender; medians",
            f"1. Limiter decisions per second ({plan.decisions:,} decisions, "
            f"{decisions.LIMIT} per {decisions.PERIOD_MS} ms, one every {decisions.STEP_US} µs)\n"
            + _limiter_table(results).text(),
            f"2. Calls per second at concurrency {throughput.CONCURRENCY}, every call answered "
            f"200 ({plan.calls:,} calls per run)\n"
            + _calls_table(results.plain).text()
            + f"\nCPU added per call: {us(added_cpu_us(results))}; sluicegate alone with no "
            f"network (mock transport): {us(results.core_us.median)}",
            f"3. Calls per second with {loopback.FAILURE_RATE:.0%} of attempts failing, retries "
            "without waits "
            f"({plan.flaky_calls:,} calls per run)\n" + _calls_table(results.flaky).text(),
            queue_report.scale_text(results.queue),
            "Against the targets\n" + _targets_table(results).text(),
            f"{_interference(results)}\nRuntime {results.seconds:.0f} s.",
        ]
    )


def _disturbance(seen: Interference | None) -> str:
    if seen is None or seen.other_cpu < 0.1 * seen.capacity:
        return "This run had the machine nearly to itself."
    return (
        f"During this run other processes used {seen.other_cpu / seen.capacity:.0%} of the "
        "machine: calls/s (wall time) suffers from that more than client CPU per call, so the "
        "ratios by client CPU per call in the first table are the steadier comparison."
    )


def _bottleneck(contenders: Sequence[throughput.Contender]) -> str:
    client = min(contender.client_load.median for contender in contenders)
    server = max(contender.server_load.median for contender in contenders)
    if client >= 0.9:
        return (
            f"The client process was CPU-bound for every contender (load ≥ {client:.2f}) while "
            f"the server used at most {server:.2f} of a core, so calls/s measures what each "
            "contender costs the client per call."
        )
    return (
        f"The client was not CPU-bound (load down to {client:.2f}; server up to {server:.2f}): "
        "something else limited the run, which narrows the gap between contenders."
    )


def markdown(results: Results, facts: dict[str, str], command: str) -> str:
    """The report as docs/benchmarks.md."""
    plan = results.plan
    window, store, aiolimiter = results.limiters
    bare = results.plain[1]
    flaky_library, flaky_tenacity = results.flaky
    added = added_cpu_us(results)
    attempts_alone = flaky_library.attempts_per_call * bare.cpu_us.median
    machine = Table(["", "value"], [[name, value] for name, value in facts.items()])
    sections = [
        "# Benchmarks",
        "<!-- Written by bench/run.py; run `make bench` rather than editing by hand. -->",
        f"Written by `{command}` in {results.seconds:.0f} s; `make bench` runs "
        "`.venv/bin/python bench/run.py --write docs/benchmarks.md`. `bench/run.py --quick` is "
        "a smoke run of a few seconds for CI, whose numbers mean little; "
        "`bench/run.py --profile` prints where a library call spends its time.",
        f"This is a {plan.name} run. Every figure is the median of {plan.repeats} timed runs "
        "after a warm-up, with the range of those runs; ratios are ratios of medians. The "
        "contenders of a comparison run in the same process, alternately.",
        "## Against the targets",
        _targets_table(results).markdown(),
        "## Machine",
        machine.markdown(),
        _interference(results),
        "## 1. Limiter decisions per second, in process",
        f"Each contender answers {plan.decisions:,} requests for a slot of one rate, "
        f"{decisions.LIMIT} per {decisions.PERIOD_MS} ms, while a simulated clock advances "
        f"{decisions.STEP_US} µs per request: 2 requests per slot, so about half are granted "
        "and half denied. A simulated clock makes the runs deterministic and keeps the cost of "
        "reading a real clock out of every contender alike.",
        "- sluicegate `SlidingWindow.acquire(now_ms)`: the exact window, bare;\n"
        "- sluicegate `MemorySlotStore.acquire_now((limit,), now_ms)`: the same behind the "
        "slot store the gate uses, one `Limit` looked up by key, as a capped call takes it;\n"
        "- aiolimiter `AsyncLimiter(1000, 1.0)`: `has_capacity()`, then `await acquire()` for "
        "the granted ones, the non-blocking way to use it. It reads the time from its event "
        "loop, so its loop is replaced by an object whose `time()` is the simulated clock "
        "(`acquire()` never suspends when there is capacity).",
        _limiter_table(results).markdown(),
        f"aiolimiter is a leaky bucket, not an exact window: after a burst it let "
        f"{aiolimiter.max_in_window} grants through in one {decisions.PERIOD_MS} ms window "
        f"where the rate allows {decisions.LIMIT}; sluicegate never goes above "
        f"{max(window.max_in_window, store.max_in_window)}. The slot store is "
        f"{store.rate.median / aiolimiter.rate.median:.2f}× aiolimiter's rate and the bare "
        f"window {window.rate.median / aiolimiter.rate.median:.2f}×.",
        f"## 2. Calls per second at concurrency {throughput.CONCURRENCY}",
        "The external system is an `aiohttp.web` server in a separate process "
        "(`bench/loopback.py`, on 127.0.0.1, port chosen by the OS) answering `POST /ok` with "
        f"200 and a {len(loopback.OK_BODY)}-byte JSON body. The client runs on "
        f"{facts['event loop']}; {throughput.CONCURRENCY} tasks make calls back to back "
        f"until {plan.calls:,} calls are done.",
        "- sluicegate: `Gate.open(None, settings=Settings(allow_loopback=True))` (memory "
        "backend, default aiohttp transport) and a deployed capping rule on the server's URLs "
        "with a rate never reached (the default cap, 300,000 calls per 60 s per host, would "
        "bite over a whole run), from whose exact window every call takes a slot; "
        '`gate.call(service="action", method="POST", body=b"{}")`. '
        "Its cost includes the 30 s budget's deadline, the egress check, the response-size cap "
        "and the counters.\n"
        "- bare aiohttp: one default `aiohttp.ClientSession()`; "
        '`async with session.post(url, data=b"{}") as resp: await resp.read()`.',
        "Client CPU is `time.process_time()` of the client process per call; load is CPU "
        "seconds per wall second (1.00 is one busy core); attempts are counted by the server.",
        _calls_table(results.plain).markdown(),
        f"sluicegate adds {us(added)} of client CPU per call. Alone, with a mock transport "
        f"and no network, it costs {us(results.core_us.median)} per call "
        f"({span(results.core_us, us)}); the rest of the difference appears only when its "
        "work and aiohttp's run together. " + _bottleneck(results.plain),
        f"## 3. Calls per second with {loopback.FAILURE_RATE:.0%} of attempts failing",
        f"Same server, `POST /flaky`: {loopback.FAILURE_RATE:.0%} of the requests it receives "
        "get a 500, drawn from a seeded random sequence, so a retry is no more likely to "
        f"fail than any other request. {plan.flaky_calls:,} calls per run.",
        "- sluicegate: as above, with `Settings(retry_schedule=(0.0, 0.0, 0.0))`: up to 3 "
        "retries inside one 30 s budget, no wait between them.\n"
        "- aiohttp + tenacity, the loop a user would write: a default `ClientSession`, and "
        "`@retry(stop=stop_after_attempt(4), wait=wait_none(), "
        "retry=retry_if_exception_type((aiohttp.ClientError, TimeoutError)) | "
        "retry_if_result(retryable), retry_error_callback=...)` around "
        "`async with asyncio.timeout(30), session.post(...) as resp: await resp.read()`, "
        "where `retryable` is sluicegate's rule (any non-2xx except 401, 403, 404) and the "
        "callback returns the last status.",
        "Both retry the same responses the same number of times with the same (zero) waits; "
        "the attempts per call counted by the server show that both did the same work.",
        _calls_table(results.flaky).markdown(),
        f"At {flaky_library.attempts_per_call:.2f} attempts per call, the attempts alone cost "
        f"about {us(attempts_alone)} of client CPU per call (bare aiohttp's "
        f"{us(bare.cpu_us.median)} per request, from section 2). sluicegate adds "
        f"{us(flaky_library.cpu_us.median - attempts_alone)} per call to that, the tenacity "
        f"loop {us(flaky_tenacity.cpu_us.median - attempts_alone)} (tenacity's per-attempt "
        "bookkeeping, plus one `asyncio.timeout` per attempt). " + _bottleneck(results.flaky),
        "### With the reqwest transport",
        'The same comparison with `Settings(transport="reqwest")`: the gate on pyreqwest '
        "(Rust, reqwest and hyper), against bare aiohttp again, alternately. It is opt-in: "
        "[engine.md](engine.md#transports) says what it does not guarantee yet.",
        _calls_table(results.reqwest).markdown(),
        *queue_report.scale_markdown(results.queue),
        *service.markdown(results.service, plan.calls),
        "## Reading these numbers",
        "- Client and server share the machine's CPUs; with 2 CPUs each process has about one "
        "core.\n"
        "- Loopback has no latency. Against a real system, calls/s at a given concurrency is "
        "bound by the system's latency long before the client's CPU, and the CPU per call "
        "becomes what the client spends rather than what limits it.\n"
        "- Other processes on the machine make runs vary; the ranges show by how much. "
        + _disturbance(results.interference),
        "## Shared through Redis\n\n" + SHARED,
    ]
    return "\n\n".join(sections) + "\n"
