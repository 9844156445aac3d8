"""``GET /metrics``: the calls of one org in the Prometheus text format.

Authentication is the bearer token alone (``Authorization: Bearer <key>``, which is what
Prometheus' ``authorization`` scrape setting sends); a Reader key (admin, editor, viewer)
of an org sees that org's series and no other's. No org or sandbox header is needed: the
key names the org, and every sandbox of it is shown unless the query parameter
``sandbox`` narrows them (404 for a sandbox the org does not have). Each scrape builds its
own registry around one collector for that org, so nothing is shared between orgs.

Series (labels ``org``, ``sandbox``, ``service``, ``endpoint``; counters also ``outcome``;
never the journey, so cardinality stays bounded by the rules and hosts):

* ``sluicegate_calls_total``, ``sluicegate_attempts_total``, ``sluicegate_retries_total``,
  ``sluicegate_slots_total``: since the oldest kept report bucket, so they survive a
  restart (and step back only when old buckets are deleted, which Prometheus reads as a
  counter reset);
* ``sluicegate_call_latency_seconds`` (calls that made an attempt) and
  ``sluicegate_queue_time_seconds`` (every call) histograms, on the report buckets' bounds;
* ``sluicegate_queue_depth`` and ``sluicegate_queue_oldest_age_seconds`` gauges per
  throttling queue (labels ``org``, ``queue``: the throttling config's uid); throttling
  is org-wide, so these carry no sandbox;
* ``sluicegate_callbacks_total`` (labels ``org``, ``sandbox``, ``result``: ``delivered``,
  ``failed`` after every attempt, ``refused`` by the egress policy) and the gauge
  ``sluicegate_callbacks_pending`` (being sent, retries included): the callbacks this
  process sent since it started, so they restart from 0 with it;
* ``sluicegate_background_failures_total`` (label ``task``: ``call_log``, ``reports``,
  ``queues``): failures of the process's background writers and dispatchers, each logged
  and retried with a growing delay. They are the process's, not the org's, and name no
  tenant; a writer that stopped fails ``/readyz``;
* the process's own series, named by ``prometheus_client``: ``process_*`` (resident and
  virtual memory, CPU seconds, open and maximum file descriptors, start time),
  ``python_info`` and ``python_gc_*``. Like the failures, they are the process's.

With several instances, each scrape reads the instance that answers it: the calls'
series are the shared store's, the others that instance's, so scrape every instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sluicegate.reporting import BOUNDS_MS, Tally
from sluicegate.service.bodies import JsonRoute
from sluicegate.service.callbacks import CallbackTally
from sluicegate.service.context import READ, principal, runtime
from sluicegate.service.problems import Problem, responses
from sluicegate.service.runtime import Runtime
from sluicegate.service.tenants import Principal
from sluicegate.throttle import QueueState

LABELS = ("org", "sandbox", "service", "endpoint")
COUNTERS = {
    "calls": "Calls ended, by outcome",
    "attempts": "HTTP attempts made",
    "retries": "Retries made (attempts after the first)",
    "slots": "Rate-rule slots taken",
}

router = APIRouter(route_class=JsonRoute, tags=["metrics"], responses=responses())


@router.get("/metrics", response_class=Response)
async def metrics(
    request: Request,
    who: Annotated[Principal, Depends(principal)],
    sandbox: Annotated[str | None, Query(description="Only this sandbox")] = None,
) -> Response:
    """The org's calls, latencies and queues in the Prometheus text format."""
    if who.role not in READ:
        raise Problem(403, "FORBIDDEN", f"the role {who.role.value!r} may not do this")
    rt = runtime(request)
    if sandbox is not None and await rt.tenants.sandbox(who.org, sandbox) is None:
        raise Problem(404, "SANDBOX_NOT_FOUND", f"org has no sandbox named {sandbox!r}")
    queues = [state for state in await rt.gate.queues() if state.org == who.org]
    registry = CollectorRegistry(auto_describe=False)
    callbacks = {name: tally for name, tally in rt.calls.callback_tallies(who.org).items()
                 if sandbox is None or name == sandbox}  # fmt: skip
    registry.register(OrgCollector(rt, who.org, sandbox, queues, callbacks))
    for process in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(process)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class OrgCollector(Collector):
    """The series of one org (and optionally one sandbox), read at collection time."""

    def __init__(
        self,
        rt: Runtime,
        org: str,
        sandbox: str | None,
        queues: list[QueueState],
        callbacks: dict[str, CallbackTally],
    ) -> None:
        self._rt = rt
        self._org = org
        self._sandbox = sandbox
        self._queue_states = queues
        self._callbacks = callbacks

    def collect(self) -> Iterator[Metric]:
        yield from self._calls()
        yield from self._queues()
        yield from self._callback_series()
        failures = CounterMetricFamily(
            "sluicegate_background_failures",
            "Failures of the service's background tasks, each retried (the whole process)",
            labels=["task"],
        )
        for task, count in (("call_log", self._rt.calls.failures),
                            ("reports", self._rt.reports.failures),
                            ("queues", self._rt.gate.failures)):  # fmt: skip
            failures.add_metric([task], count)
        yield failures

    def _calls(self) -> Iterator[Metric]:
        counters = {
            name: CounterMetricFamily(f"sluicegate_{name}", doc, labels=[*LABELS, "outcome"])
            for name, doc in COUNTERS.items()
        }
        by_endpoint: dict[tuple[str, str, str, str], Tally] = {}
        for (org, sandbox, service, endpoint, outcome), tally in sorted(
            self._rt.reports.totals(self._org, self._sandbox), key=lambda item: item[0]
        ):
            labels = [org, sandbox, service, endpoint, outcome]
            for name, family in counters.items():
                family.add_metric(labels, getattr(tally, name))
            total = by_endpoint.setdefault((org, sandbox, service, endpoint), Tally())
            total.merge(tally)
        yield from counters.values()
        latency = HistogramMetricFamily(
            "sluicegate_call_latency_seconds",
            "Time from the slot grant to the end, of calls that made an attempt",
            labels=LABELS,
        )
        queued = HistogramMetricFamily(
            "sluicegate_queue_time_seconds", "Time waited in a throttling queue", labels=LABELS
        )
        for key, tally in by_endpoint.items():
            latency.add_metric(list(key), _buckets(tally.latency.counts),
                               tally.latency_sum_ms / 1000)  # fmt: skip
            queued.add_metric(list(key), _buckets(tally.queued.counts),
                              tally.queued_sum_ms / 1000)  # fmt: skip
        yield latency
        yield queued

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "sluicegate_queue_depth", "Calls waiting in a throttling queue", labels=["org", "queue"]
        )
        oldest = GaugeMetricFamily(
            "sluicegate_queue_oldest_age_seconds",
            "Age of the oldest first attempt waiting in a throttling queue (0 when empty)",
            labels=["org", "queue"],
        )
        for state in self._queue_states:
            depth.add_metric([self._org, state.uid], state.depth)
            oldest.add_metric([self._org, state.uid], state.oldest_age or 0.0)
        yield depth
        yield oldest

    def _callback_series(self) -> Iterator[Metric]:
        ended = CounterMetricFamily(
            "sluicegate_callbacks",
            "Callbacks ended since the process started, by result",
            labels=["org", "sandbox", "result"],
        )
        pending = GaugeMetricFamily(
            "sluicegate_callbacks_pending",
            "Callbacks being sent, retries included",
            labels=["org", "sandbox"],
        )
        for sandbox, tally in sorted(self._callbacks.items()):
            for result in ("delivered", "failed", "refused"):
                ended.add_metric([self._org, sandbox, result], getattr(tally, result))
            pending.add_metric([self._org, sandbox], tally.pending)
        yield ended
        yield pending


def _buckets(counts: list[int]) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs in seconds, ending with ``+Inf``."""
    pairs, seen = [], 0
    for bound, count in zip([*(str(ms / 1000) for ms in BOUNDS_MS), "+Inf"], counts, strict=True):
        seen += count
        pairs.append((bound, float(seen)))
    return pairs
