"""The report API: totals and time series of the calls of one org and sandbox.

``GET /v1/reports/summary`` and ``GET /v1/reports/timeseries`` (Reader roles), filtered by
``journeyId``, ``service`` and ``endpoint`` (a capping config's uid or a host, as calls
are labelled), over ``from`` (inclusive) to ``to`` (exclusive):

* each is an ISO-8601 time (``2027-01-15T08:00:00Z``, an offset, or none: UTC) or epoch
  seconds (``1800000000``, fractions allowed); ``from`` is rounded down and ``to`` up to
  whole seconds, the resolution of the buckets;
* ``to`` defaults to now (the current second included), ``from`` to one hour before
  ``to``; a bad time is 400 ``INVALID_TIME``, ``from`` not before ``to`` 400
  ``INVALID_RANGE``.

Percentiles are the upper bound of the histogram bucket the percentile falls in
(:data:`~sluicegate.reporting.BOUNDS_MS`), ``null`` without data; ``avg`` is exact. See
:mod:`sluicegate.reporting` for which calls have a latency. Time series list only the
intervals that have calls; more than :data:`MAX_INTERVALS` is 400 ``TOO_MANY_BUCKETS``.
The buckets themselves live in :mod:`sluicegate.service.buckets`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from sluicegate.call import Service
from sluicegate.errors import InvalidInput
from sluicegate.records import iso_time
from sluicegate.reporting import Tally
from sluicegate.service.bodies import JsonRoute
from sluicegate.service.buckets import Selection
from sluicegate.service.context import Context, Reader
from sluicegate.service.problems import responses

DEFAULT_RANGE_SECONDS = 3600
MAX_INTERVALS = 20_000
STEPS = {"1s": 1, "1m": 60, "1h": 3600}


class Percentiles(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None
    avg: float | None


class Summary(BaseModel):
    calls: int
    attempts: int
    retries: int
    slots: int
    outcomes: dict[str, int]
    latencyMs: Percentiles
    queuedMs: Percentiles


class Interval(Summary):
    start: str


class Timeseries(BaseModel):
    step: str
    buckets: list[Interval]


router = APIRouter(route_class=JsonRoute, tags=["reports"], responses=responses())

JourneyFilter = Annotated[str | None, Query(alias="journeyId", description="One journey")]
ServiceFilter = Annotated[Service | None, Query(description="action or dataSource")]
EndpointFilter = Annotated[
    str | None, Query(description="A capping config uid, or the host of calls without one")
]
From = Annotated[
    str | None, Query(alias="from", description="ISO-8601 or epoch seconds; default to - 1 h")
]
To = Annotated[
    str | None, Query(alias="to", description="ISO-8601 or epoch seconds (exclusive); default now")
]


@router.get("/v1/reports/summary", response_model=Summary)
async def summary(
    ctx: Reader,
    journey: JourneyFilter = None,
    service: ServiceFilter = None,
    endpoint: EndpointFilter = None,
    since: From = None,
    until: To = None,
) -> Summary:
    """Calls, attempts, retries, slots, outcomes and time percentiles over a range."""
    selection = _select(ctx, journey, service, endpoint, since, until)
    found = await ctx.runtime.reports.query(selection, by=("outcome",))
    return summarize({str(group[0]): tally for group, tally in found.items()})


@router.get("/v1/reports/timeseries", response_model=Timeseries)
async def timeseries(
    ctx: Reader,
    step: Annotated[Literal["1s", "1m", "1h"], Query(description="Interval length")] = "1m",
    journey: JourneyFilter = None,
    service: ServiceFilter = None,
    endpoint: EndpointFilter = None,
    since: From = None,
    until: To = None,
) -> Timeseries:
    """The summary of every ``step`` interval (UTC-aligned) that has calls, oldest first."""
    selection = _select(ctx, journey, service, endpoint, since, until)
    seconds = STEPS[step]
    if math.ceil((selection.until - selection.since) / seconds) > MAX_INTERVALS:
        message = f"at most {MAX_INTERVALS} intervals: widen the step or narrow the range"
        raise InvalidInput("TOO_MANY_BUCKETS", message)
    found = await ctx.runtime.reports.query(selection, by=("outcome",), step=seconds)
    starts: dict[int, dict[str, Tally]] = {}
    for (start, outcome), tally in found.items():
        starts.setdefault(int(start), {})[str(outcome)] = tally
    buckets = [
        Interval(start=iso_time(start), **summarize(starts[start]).model_dump())
        for start in sorted(starts)
    ]
    return Timeseries(step=step, buckets=buckets)


def summarize(by_outcome: Mapping[str, Tally]) -> Summary:
    """One summary of tallies per outcome."""
    total = Tally()
    for tally in by_outcome.values():
        total.merge(tally)
    outcomes = {outcome: tally.calls for outcome, tally in sorted(by_outcome.items())}
    return Summary(
        calls=total.calls, attempts=total.attempts, retries=total.retries, slots=total.slots,
        outcomes=outcomes,
        latencyMs=_percentiles(total.latency.percentile, total.average_latency_ms()),
        queuedMs=_percentiles(total.queued.percentile, total.average_queued_ms()),
    )  # fmt: skip


def _percentiles(percentile: Callable[[float], float | None], avg: float | None) -> Percentiles:
    rounded = None if avg is None else round(avg, 3)
    return Percentiles(p50=percentile(0.5), p95=percentile(0.95), p99=percentile(0.99),
                       avg=rounded)  # fmt: skip


def _select(
    ctx: Context,
    journey: str | None,
    service: Service | None,
    endpoint: str | None,
    since: str | None,
    until: str | None,
) -> Selection:
    # Empty (``from=``) is absent: the schema allows it, and a form leaves it so.
    if not until:
        end = math.floor(ctx.runtime.clock.now()) + 1  # the current second included
    else:
        end = math.ceil(parse_time("to", until))
    start = end - DEFAULT_RANGE_SECONDS if not since else math.floor(parse_time("from", since))
    if start >= end:
        raise InvalidInput("INVALID_RANGE", "'from' must be before 'to'")
    return Selection(
        org=ctx.org, sandbox=ctx.sandbox.name, since=start, until=end, journey=journey,
        service=None if service is None else service.value, endpoint=endpoint,
    )  # fmt: skip


def parse_time(name: str, text: str) -> float:
    """Epoch seconds of ``text``: epoch seconds, or ISO-8601 (UTC when no offset is given)."""
    try:
        value = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            message = f"{name!r} must be ISO-8601 or epoch seconds, not {text!r}"
            raise InvalidInput("INVALID_TIME", message) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        value = moment.timestamp()
    if not math.isfinite(value) or not 0 <= value < 1e11:  # 1e11 s: past the year 5000
        raise InvalidInput("INVALID_TIME", f"{name!r} is out of range: {text!r}")
    return value
