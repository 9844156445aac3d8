"""``/v1/queues``: an org's throttling queues, and an operator's pause, resume and purge.

A queue's id is the uid of the throttling config it belongs to (throttling is org-wide,
so any sandbox of the org sees the same queues). A queue is known while its config exists
or while it holds calls or is paused (its config deleted meanwhile); any other id, and
every id of another org, is 404 ``QUEUE_NOT_FOUND``. Reading needs a Reader role; pause,
resume and purge an Editor. Each step answers the queue's state after it (purge also the
number of calls it purged). What the steps do is :mod:`sluicegate.queues`'s, and
``docs/api-queues.md``'s.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from sluicegate.configs import ConfigKind, ConfigRecord
from sluicegate.matching import throttle_key
from sluicegate.queues import ThrottlingQueue
from sluicegate.rules import ThrottlingRule
from sluicegate.service.bodies import JsonRoute
from sluicegate.service.context import Context, Editor, Reader
from sluicegate.service.problems import Problem, responses
from sluicegate.throttle import QueueState


class QueueOut(BaseModel):
    """A throttling queue of the org."""

    id: str = Field(description="The uid of the throttling config the queue belongs to")
    maxThroughput: int = Field(description="Calls per second it drains at (0: unknown)")
    paused: bool = Field(description="Paused by an operator: it dispatches nothing")
    depth: int = Field(description="Calls waiting in it")
    oldestAgeSeconds: float | None = Field(
        default=None, description="Age of its oldest waiting call"
    )
    purged: int | None = Field(default=None, description="Calls this purge ended (purge only)")


class QueueList(BaseModel):
    results: list[QueueOut]


router = APIRouter(
    route_class=JsonRoute, prefix="/v1/queues", tags=["queues"],
    responses=responses({404: "Unknown sandbox, or no throttling queue of that id in the org",
                         503: "Storage unavailable"}),
)  # fmt: skip


@router.get("", response_model=QueueList, response_model_exclude_none=True)
async def list_queues(ctx: Reader) -> QueueList:
    """The org's throttling queues: its throttling config's, then any other that holds
    calls or is paused (its config deleted)."""
    configs = await _configs(ctx)
    found = {uid: _out(None, record) for uid, record in configs.items()}
    for state in await ctx.runtime.gate.queues():
        if state.org == ctx.org:
            found[state.uid] = _out(state, configs.get(state.uid))
    return QueueList(results=list(found.values()))


@router.post("/{queueId}:pause", response_model=QueueOut, response_model_exclude_none=True)
async def pause_queue(queueId: str, ctx: Editor) -> QueueOut:
    """Dispatch none of the queue's calls until it is resumed, on every instance; new
    calls are still accepted and queued."""
    queue, record = await _queue(ctx, queueId)
    return _out(await queue.pause(), record)


@router.post("/{queueId}:resume", response_model=QueueOut, response_model_exclude_none=True)
async def resume_queue(queueId: str, ctx: Editor) -> QueueOut:
    """Dispatch the queue's calls again, at its rate, oldest first."""
    queue, record = await _queue(ctx, queueId)
    return _out(await queue.resume(), record)


@router.post("/{queueId}:purge", response_model=QueueOut, response_model_exclude_none=True)
async def purge_queue(queueId: str, ctx: Editor) -> QueueOut:
    """End every call waiting in the queue, unsent: each ends ``expired`` with the error
    "purged by an operator". Calls already dispatched are not affected."""
    queue, record = await _queue(ctx, queueId)
    purged = await queue.purge()
    return _out(await queue.state(), record).model_copy(update={"purged": purged})


async def _configs(ctx: Context) -> dict[str, ConfigRecord]:
    """The org's throttling configs by uid, from whichever sandbox each was created in."""
    found: dict[str, ConfigRecord] = {}
    for box in await ctx.runtime.tenants.sandboxes(ctx.org):
        rules = ctx.runtime.gate.rules
        for record in rules.list(ConfigKind.THROTTLING, org=ctx.org, sandbox=box.name):
            found[record.uid] = record
    return found


async def _queue(ctx: Context, queue_id: str) -> tuple[ThrottlingQueue, ConfigRecord | None]:
    """The org's queue ``queue_id`` and its config, if it has one; 404 otherwise. An id
    never holds ``:`` (a uid does not), so no id of one org names another org's queue."""
    if ":" not in queue_id:
        gate, key = ctx.runtime.gate, throttle_key(ctx.org, queue_id)
        record = (await _configs(ctx)).get(queue_id)
        if record is not None or any(state.key == key for state in await gate.queues()):
            return gate.queue(key), record
    raise Problem(404, "QUEUE_NOT_FOUND", "the org has no throttling queue of that id")


def _out(state: QueueState | None, record: ConfigRecord | None) -> QueueOut:
    """A queue as answered: ``state`` if the store holds any of it, else empty."""
    rule = None if record is None else record.deployed_rule or record.rule
    rate = rule.max_throughput if isinstance(rule, ThrottlingRule) else 0
    if state is None:
        assert record is not None
        return QueueOut(id=record.uid, maxThroughput=rate, paused=False, depth=0)
    return QueueOut(id=state.uid, maxThroughput=state.rate or rate, paused=state.paused,
                    depth=state.depth, oldestAgeSeconds=_rounded(state.oldest_age))  # fmt: skip


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
