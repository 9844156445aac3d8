"""``GET /v1/endpoints``: every endpoint of an org and sandbox, its rules, live use, alerts.

An endpoint is what calls are labelled with in reports: the uid of the capping config that
matched, else the host. Listed (Reader roles): the sandbox's capping configs (oldest
first), the org's throttling config (it applies to every sandbox, so it is listed in each),
then every other label found in the kept report buckets (hosts, and uids of deleted
configs). For each:

* ``rules``: one entry per service of a capping config, the throttling config, or the
  default cap of a host, with the enforced values (``deployedConfig`` when deployed) and,
  while enforced, ``slotsInUse`` (grants in the current sliding window) and
  ``connectionsInUse`` (capping with ``maxHttpConnections``);
* ``queue`` (throttling): depth, age of the oldest waiting call, drain rate;
* ``recent``: calls and outcomes of the last :data:`WINDOW_SECONDS`;
* ``alerts``, evaluated on request over the same window, without memory or debounce:
  ``errorRateExceeded`` when errors / (calls - capped) is over the threshold
  (``errorRateThreshold``, default 0.2), and ``cappingTriggered`` when calls were capped.
  Errors are every outcome but ``success`` and ``capped``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from sluicegate.call import Service
from sluicegate.configs import ConfigKind, ConfigRecord
from sluicegate.gate import Gate
from sluicegate.matching import capping_key, default_key, throttle_key
from sluicegate.outcomes import Outcome
from sluicegate.reporting import Tally
from sluicegate.rules import CappingRule, ThrottlingRule
from sluicegate.service.bodies import JsonRoute
from sluicegate.service.buckets import Selection
from sluicegate.service.context import Context, Reader
from sluicegate.service.problems import responses
from sluicegate.throttle import QueueState

WINDOW_SECONDS = 300
DEFAULT_ERROR_RATE = 0.2
ERRORS = frozenset(Outcome) - {Outcome.SUCCESS, Outcome.CAPPED}
GROUPS = ("endpoint", "outcome")


class RuleOut(BaseModel):
    kind: str
    service: str
    enforced: bool
    uid: str | None = None
    state: str | None = None
    url: str | None = None
    methods: list[str] | None = None
    rating: dict[str, int] | None = None
    maxThroughput: int | None = None
    maxHttpConnections: int | None = None
    slotsInUse: int | None = None
    connectionsInUse: int | None = None


class QueueOut(BaseModel):
    depth: int
    oldestAgeSeconds: float | None = None
    maxThroughput: int


class RecentOut(BaseModel):
    windowSeconds: int = WINDOW_SECONDS
    calls: int = 0
    callsPerSecond: float = 0.0
    outcomes: dict[str, int] = Field(default_factory=dict)
    errorRate: float | None = None


class AlertOut(BaseModel):
    name: str
    windowSeconds: int = WINDOW_SECONDS
    value: float | None = None
    threshold: float | None = None
    count: int | None = None


class EndpointOut(BaseModel):
    endpoint: str
    kind: str
    url: str | None = None
    rules: list[RuleOut] = Field(default_factory=list)
    queue: QueueOut | None = None
    recent: RecentOut = Field(default_factory=RecentOut)
    alerts: list[AlertOut] = Field(default_factory=list)


class EndpointList(BaseModel):
    results: list[EndpointOut]


router = APIRouter(route_class=JsonRoute, tags=["reports"], responses=responses())


@router.get("/v1/endpoints", response_model=EndpointList, response_model_exclude_none=True)
async def list_endpoints(
    ctx: Reader,
    threshold: Annotated[
        float, Query(alias="errorRateThreshold", ge=0, le=1, description="Alert above this")
    ] = DEFAULT_ERROR_RATE,
) -> EndpointList:
    """Every endpoint ruled or seen, with its rules, current use, recent calls and alerts."""
    rt, org, sandbox = ctx.runtime, ctx.org, ctx.sandbox.name
    entries: dict[str, EndpointOut] = {}
    for record in rt.gate.rules.list(ConfigKind.CAPPING, org=org, sandbox=sandbox):
        entries[record.uid] = await _capping(rt.gate, record)
    queues = {state.key: state for state in await rt.gate.queues()}
    for record in await _throttling_configs(ctx):
        entries[record.uid] = await _throttling(rt.gate, record, queues)
    for service, label in sorted(rt.reports.seen(org, sandbox)):
        entry = entries.get(label)
        if entry is None:
            entry = entries[label] = EndpointOut(endpoint=label, kind=_label_kind(label))
        if entry.kind == "host":
            entry.url = label
            entry.rules.append(await _default(ctx, Service(service), label))
    now = math.floor(rt.clock.now())
    window = Selection(org=org, sandbox=sandbox, since=now - WINDOW_SECONDS + 1, until=now + 1)
    recent: dict[str, dict[str, Tally]] = {}
    for (endpoint, outcome), tally in (await rt.reports.query(window, by=GROUPS)).items():
        recent.setdefault(str(endpoint), {})[str(outcome)] = tally
    for endpoint, entry in entries.items():
        entry.recent, entry.alerts = _judge(recent.get(endpoint, {}), threshold)
    return EndpointList(results=list(entries.values()))


async def _throttling_configs(ctx: Context) -> list[ConfigRecord]:
    """The org's throttling config, managed from whichever sandbox it was created in."""
    found = []
    for box in await ctx.runtime.tenants.sandboxes(ctx.org):
        found += ctx.runtime.gate.rules.list(ConfigKind.THROTTLING, org=ctx.org, sandbox=box.name)
    return found


async def _capping(gate: Gate, record: ConfigRecord) -> EndpointOut:
    rule = record.deployed_rule or record.rule
    assert isinstance(rule, CappingRule)
    enforced = record.deployed_rule is not None
    rules = []
    for service, limit in rule.services.items():
        key = capping_key(record.org, record.sandbox, record.uid, service)
        connections = limit.max_http_connections
        rules.append(RuleOut(
            kind="capping", service=service.value, enforced=enforced, uid=record.uid,
            state=record.state.value, url=rule.url, methods=sorted(rule.methods),
            rating={"maxCallsCount": limit.rating.max_calls_count,
                    "periodInMs": limit.rating.period_ms},
            maxHttpConnections=connections,
            slotsInUse=await gate.slots_in_use(key) if enforced else None,
            connectionsInUse=gate.connections_in_use(key) if enforced and connections else None,
        ))  # fmt: skip
    return EndpointOut(endpoint=record.uid, kind="capping", url=rule.url, rules=rules)


async def _throttling(
    gate: Gate, record: ConfigRecord, queues: Mapping[str, QueueState]
) -> EndpointOut:
    rule = record.deployed_rule or record.rule
    assert isinstance(rule, ThrottlingRule)
    enforced = record.deployed_rule is not None
    key = throttle_key(record.org, record.uid)
    queue = QueueOut(depth=0, maxThroughput=rule.max_throughput)
    if (state := queues.get(key)) is not None:
        queue = QueueOut(depth=state.depth, oldestAgeSeconds=state.oldest_age,
                         maxThroughput=state.rate or rule.max_throughput)  # fmt: skip
    found = RuleOut(
        kind="throttling", service=Service.ACTION.value, enforced=enforced, uid=record.uid,
        state=record.state.value, url=rule.url_pattern, methods=sorted(rule.methods),
        maxThroughput=rule.max_throughput,
        slotsInUse=await gate.slots_in_use(key) if enforced else None,
    )  # fmt: skip
    return EndpointOut(endpoint=record.uid, kind="throttling", url=rule.url_pattern,
                       rules=[found], queue=queue)  # fmt: skip


async def _default(ctx: Context, service: Service, host: str) -> RuleOut:
    """The cap of a host without a capping config (operator settings)."""
    settings = ctx.runtime.settings
    cap = settings.action_default if service is Service.ACTION else settings.datasource_default
    key = default_key(service, ctx.org, ctx.sandbox.name, host)
    return RuleOut(
        kind="default", service=service.value, enforced=True,
        rating={"maxCallsCount": cap.count, "periodInMs": cap.period_ms},
        slotsInUse=await ctx.runtime.gate.slots_in_use(key),
    )  # fmt: skip


def _label_kind(label: str) -> str:
    """A label that is not a current config: a host, or the uid of a deleted config."""
    try:
        uuid.UUID(label)
    except ValueError:
        return "host"
    return "capping"


def _judge(by_outcome: Mapping[str, Tally], threshold: float) -> tuple[RecentOut, list[AlertOut]]:
    """The recent counts of one endpoint and the alerts they raise."""
    outcomes = {outcome: tally.calls for outcome, tally in sorted(by_outcome.items())}
    calls = sum(outcomes.values())
    capped = outcomes.get(Outcome.CAPPED.value, 0)
    errors = sum(count for outcome, count in outcomes.items() if outcome in ERRORS)
    rate = round(errors / (calls - capped), 4) if calls > capped else None
    recent = RecentOut(calls=calls, callsPerSecond=round(calls / WINDOW_SECONDS, 3),
                       outcomes=outcomes, errorRate=rate)  # fmt: skip
    alerts = []
    if rate is not None and rate > threshold:
        alerts.append(AlertOut(name="errorRateExceeded", value=rate, threshold=threshold))
    if capped:
        alerts.append(AlertOut(name="cappingTriggered", count=capped))
    return recent, alerts
