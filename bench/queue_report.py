"""Section 4 of the report, the queue at scale: its table, its prose, its targets.

The figures come from :mod:`queue_scale` (one :class:`queue_results.Scale`: the library and
the service side by side). The Markdown says how each was measured, beside the figures, so
that docs/benchmarks.md can be read without the code; :func:`targets` holds the queue's
goals, which :mod:`report` puts in the one targets table.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from queue_results import (
    IN_MEMORY_BYTES,
    IN_MEMORY_SOURCE,
    PERIOD,
    QUIET,
    RATE,
    Scale,
    Side,
    warmup,
)
from sluicegate.matching import CACHE_SIZE
from sluicegate.settings import Settings
from tables import Table, Target, count, known, mib, nbytes, other_cpu, seconds, share

#: How much later than a call queued behind it a call may arrive and still count as in
#: order: far less than one dispatch apart (1000 ms / 200 = 5 ms).
LATE_TOLERANCE = 0.002
GIB = 2**30


def targets(scale: Scale) -> list[Target]:
    """The queue's targets: the library's enqueue rate, then what holds for either way in."""
    return [
        Target(
            "queued, gate.submit: calls queued per second",
            scale.library.enqueue.rate,
            20_000,
            True,
            count,
        ),
        *_side_targets(scale.library, "queued, gate.submit"),
        *_side_targets(scale.service, "queued, POST /v1/calls"),
    ]


def scale_table(scale: Scale) -> Table:
    """Section 4's figures: the library and the service side by side."""
    sides = (scale.library, scale.service)

    def row(label: str, show: Callable[[Side], str]) -> list[str]:
        return [label, *(show(side) for side in sides)]

    def late(side: Side) -> str:
        drained = side.drain
        return f"{drained.late} (by {drained.late_by * 1000:.1f} ms)" if drained.late else "0"

    def period(side: Side) -> str:
        drained = side.drain
        return known(drained.period, lambda mean: f"{mean:.3f} s ({drained.closest:.3f} s)")

    def rate(side: Side) -> str:
        drained = side.drain
        return known(drained.rate, lambda per_s: f"{per_s:.1f} ({drained.utilisation:.1%})")

    def maybe(value: float | None) -> str:
        return "—" if value is None else seconds(value)

    drained_for = scale.library.drain.seconds
    return Table(
        ["", *(side.name for side in sides)],
        [
            row("calls queued, warm-up included", lambda s: count(s.calls)),
            row("concurrent callers", lambda s: count(s.concurrency)),
            row("calls queued per second, after the warm-up", lambda s: count(s.enqueue.rate)),
            row("CPU load of the gate's process meanwhile", lambda s: f"{s.enqueue.load:.2f}"),
            row(
                "RSS: gate open → after the warm-up → every call queued",
                lambda s: " → ".join(
                    mib(value)
                    for value in (s.memory.rss_open, s.memory.rss_before, s.memory.rss_after)
                ),
            ),
            row(
                "calls waiting after the warm-up → with every call queued",
                lambda s: f"{s.memory.queued_before:,} → {s.memory.queued_after:,}",
            ),
            row("RSS growth per queued call", lambda s: nbytes(s.memory.per_call)),
            row("peak RSS of the gate's process", lambda s: mib(s.memory.peak)),
            row("data directory per stored call", lambda s: nbytes(s.memory.disk_per_call)),
            row("graceful stop, every call queued", lambda s: seconds(s.restart.stop_seconds)),
            row("calls stored at the restart", lambda s: count(s.restart.queued)),
            row("restart: Python start and imports", lambda s: maybe(s.restart.start_seconds)),
            row("restart: the Gate.open call alone", lambda s: maybe(s.restart.open_seconds)),
            row(
                "restart: process start → gate open (library) / answers (service)",
                lambda s: seconds(s.restart.ready_seconds),
            ),
            row(
                "restart: process start → first queued call at the system",
                lambda s: seconds(s.restart.first_seconds),
            ),
            row("RSS once restarted", lambda s: mib(s.restart.rss)),
            row(
                f"drain: calls arrived in the first {drained_for:g} s",
                lambda s: count(s.drain.arrivals),
            ),
            row(
                f"drain: from an arrival to the {RATE}th after it, mean (shortest)",
                period,
            ),
            row(
                "drain: calls per second (÷ the rule's rate)",
                rate,
            ),
            row(
                "most calls in any 1000 ms window, whole run",
                lambda s: count(s.drain.most_in_window),
            ),
            row("drain: calls arrived after one queued behind them", late),
            row("drain: pairs arrived out of queue order", lambda s: count(s.drain.inversions)),
            row(
                "drain: calls skipped / not from the queue's head / delivered again",
                lambda s: f"{s.drain.skipped} / {s.drain.foreign} / {s.drain.repeated}",
            ),
        ],
    )


def _in_memory(scale: Scale) -> str:
    """The in-memory design's figure beside this run's."""
    old, library, service = IN_MEMORY_BYTES, scale.library, scale.service
    return (
        f"The in-memory design held {old:,} B per queued call, {old * 1e6 / GIB:.1f} GiB for a "
        f"million ({IN_MEMORY_SOURCE}). This run: {nbytes(library.memory.per_call)} "
        f"of RSS per queued call in process ({library.memory.per_call * 1e6 / 2**20:,.1f} MiB "
        f"per million), {nbytes(service.memory.per_call)} in the service; on disk "
        f"{nbytes(library.memory.disk_per_call)} per stored call."
    )


def scale_text(scale: Scale) -> str:
    """Section 4 for a terminal."""
    return (
        f"4. Calls queued behind a throttling rule of {RATE} calls/s, SQLite "
        "backend, system clock\n"
        + scale_table(scale).text()
        + f"\n{_in_memory(scale)}\n{other_cpu(scale.interference, 'this part')} "
        f"Took {scale.seconds:.0f} s."
    )


def scale_markdown(scale: Scale) -> list[str]:
    """Section 4 as Markdown paragraphs: how it was measured, the figures, what they say."""
    library, service = scale.library, scale.service
    rate, guard = RATE, Settings().send_guard_ms
    held = PERIOD + guard / 1000
    minutes = 1_000_000 / service.enqueue.rate / 60
    return [
        "## 4. Calls queued behind a throttling rule, at scale",
        "A call that waits for a throttling slot is a row of `queued_calls` in "
        "`<data_dir>/sluicegate.db`; one dispatcher per queue claims the head when a slot "
        "frees, and a caller that drops its handle leaves nothing of the call in memory. "
        f"This section queues {library.calls:,} calls through the library and "
        f"{service.calls:,} through the service behind one throttling config of "
        f"`maxThroughput` {rate} (`POST` on `<system>/ok/*`), on the SQLite backend in a fresh "
        "temporary directory with the system clock, restarts each with every call still "
        "queued, and watches the queue drain.",
        "The external system (`tests/arrivals.py`, run by `bench/arrivals.py`) is a process "
        "of its own that answers 200 "
        "and records, for each `POST /ok/<n>`, the kernel's receive time of the request "
        "(`SO_TIMESTAMPNS`) and `n`, the order in which the call was submitted. Each gate "
        "runs in a process of its own, so that the memory figures are its own.",
        f"- **gate.submit, in process.** A child process opens `Gate.open(data_dir, "
        "settings=Settings(allow_loopback=True))` (default aiohttp transport), deploys the "
        f"config with `gate.rules.create` and `deploy`, and queues {library.calls:,} calls "
        '`gate.submit(service="action", method="POST", url=".../ok/<n>", body=b"{}")` from '
        f"{library.concurrency:,} concurrent tasks that drop each handle. Every call has a "
        "URL of its own (its number is in the path), so what the engine caches per URL is "
        f"worked out again for every call. The first {warmup(library.calls):,} "
        f"calls are a warm-up: the first {rate} go straight out and the others queue, "
        "one-time costs are paid (the HTTP session, SQLite's page cache), and the engine's "
        "bounded caches keyed by URL fill up (rule resolution keeps the last "
        f"{CACHE_SIZE:,}): a fixed cost, shown by the RSS at the end of the "
        "warm-up. RSS is read from `/proc/self/statm` after `gc.collect()` with the gate "
        "open, at the end of the warm-up and once every `submit` has returned (each call is "
        "committed by then); the growth per queued call is the growth of RSS from the end "
        "of the warm-up over the growth of the queue's depth. The peak is the process's "
        "`VmHWM`. Then the gate is closed (a graceful stop) and the process exits.\n"
        "- **POST /v1/calls.** `sluicegate serve --dev` in a process of its own. The "
        "benchmark deploys the config with `POST /journey/orchestration/throttlingConfigs` "
        f"and `.../{{uid}}/deploy`, then {service.concurrency} concurrent clients send "
        '`POST /v1/calls` `{"journeyId": "bench", "service": "action", "waitSeconds": 0, '
        '"request": {"method": "POST", "url": ".../ok/<n>"}}` with the development key (org '
        "`demo`, sandbox `prod`); the service answers 202 once the call is queued. Its RSS "
        "is read from `/proc/<pid>/statm` (no garbage collection can be forced from "
        "outside), its queue depth from `GET /metrics`, after a warm-up of "
        f"{warmup(service.calls):,} calls as above. "
        f"{service.calls:,} calls rather than a million: the service takes "
        f"{service.enqueue.rate:,.0f} calls/s here (each request is parsed, validated, "
        f"authenticated and logged), so a million would take {minutes:.0f} minutes; memory "
        "is measured per queued call either way.\n"
        "- **Restart.** After the graceful stop (timed), the benchmark counts the stored "
        "calls and reads their order from the file, and waits until "
        f"{QUIET:.2f} s after the stop, so that the slots taken before it "
        "(restored at the start) have left their window and the time to the first call is "
        "the restart's own. Then a new process starts on the same directory, timed from "
        "just before it starts: for the library, until `Gate.open` has returned (the call "
        "alone is timed inside the process too); for the service, until it answers `GET "
        "/metrics`; for both, until the external system receives the first queued call.\n"
        f"- **Drain.** The arrivals of the {library.drain.seconds:g} s after the first one "
        f"are counted. A rule of {rate} per 1000 ms allows at most {rate} arrivals in any "
        f"1000 ms window wherever it starts: from any arrival to the {rate}th after it, at "
        "least 1000 ms. The mean of that time gives the rate in the long run. A slot is "
        f"held 1000 ms plus the guard band (`Settings.send_guard_ms`, {guard} ms) from each "
        f"send, so the rule lets through at most {rate} every {held:.3f} s "
        f"({rate / held:.1f}/s). The order of arrival is compared with the order of the "
        "queue in the file; a call in flight at the stop runs again after the restart "
        "(delivery is at least once), which the last row counts.",
        scale_table(scale).markdown(),
        _in_memory(scale),
        *(_findings(side) for side in (library, service)),
        other_cpu(scale.interference, f"this section ({scale.seconds:.0f} s)"),
    ]


def _findings(side: Side) -> str:
    """What one side's figures say, in sentences."""
    memory, restart, drained = side.memory, side.restart, side.drain
    order = (
        "every call arrived in the order it was queued"
        if not drained.late
        else f"{drained.late} calls arrived after one queued behind them, by at most "
        f"{drained.late_by * 1000:.1f} ms (calls claimed together are sent at once, "
        "each by its own task)"
    )
    return (
        f"**{side.name}**: {memory.queued_after:,} calls waiting held "
        f"{mib(memory.rss_after)} of RSS (peak {mib(memory.peak)}) and "
        f"{mib(memory.disk_per_call * memory.stored)} on disk. Restarted with "
        f"{restart.queued:,} stored, the new process was ready after "
        f"{seconds(restart.ready_seconds)} holding {mib(restart.rss)}, and the first queued "
        f"call reached the system {seconds(restart.first_seconds)} after it started. "
        + (
            "Too few calls drained to measure a rate; "
            if math.isnan(drained.rate)
            else f"The queue then drained at {drained.rate:.1f} calls/s "
            f"({drained.utilisation:.1%} of the rule) and the closest "
            f"{RATE + 1} arrivals spanned {drained.closest:.3f} s; "
        )
        + f"never more than {drained.most_in_window} arrived in any 1000 ms window over the "
        f"whole run; {order}."
    )


def _side_targets(side: Side, tag: str) -> list[Target]:
    """The targets of the queue at scale that hold for either way in."""
    return [
        Target(f"{tag}: RSS growth per queued call", side.memory.per_call, 100, False, nbytes),
        Target(
            f"{tag}: peak RSS, {side.memory.queued_after:,} queued",
            side.memory.peak,
            GIB,
            False,
            mib,
        ),
        Target(
            f"{tag}: restart with {side.restart.queued:,} queued, to the first call at the system",
            side.restart.first_seconds,
            2,
            False,
            seconds,
        ),
        Target(
            f"{tag}: most calls in any 1000 ms at the system (rule: {RATE})",
            side.drain.most_in_window,
            RATE,
            False,
            count,
        ),
        Target(f"{tag}: drain rate ÷ the rule's rate", side.drain.utilisation, 0.95, True, share),
        Target(
            f"{tag}: calls dispatched out of the queue's order (skipped, or not its head)",
            side.drain.skipped + side.drain.foreign,
            0,
            False,
            count,
        ),
        # Calls dispatched together leave at once, each on its own connection: their
        # arrival order may swap by a fraction of a millisecond, never by a dispatch.
        Target(
            f"{tag}: most a call arrived after one queued behind it",
            side.drain.late_by,
            LATE_TOLERANCE,
            False,
            lambda value: f"{value * 1000:.1f} ms",
        ),
    ]
