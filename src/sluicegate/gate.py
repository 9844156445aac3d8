"""The Gate: the one entry point. It orders the guardrails of every call.

1. the egress policy (a refused URL ends ``blocked`` before anything else);
2. throttling: a call over the rate is stored durably in its queue, and a dispatcher
   starts it when a slot frees, in FIFO order;
3. the executor: capping, connections, attempts, retries and redirect hops inside the
   journey's budget, every request with its own slots;
4. reporting: every call is counted exactly once, whatever its outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Unpack, overload

from sluicegate.call import Call, CallArgs, new_call_id
from sluicegate.clock import Clock, SystemClock
from sluicegate.configs import RuleBook
from sluicegate.egress import EgressPolicy
from sluicegate.errors import StorageError
from sluicegate.executor import Executor
from sluicegate.handle import CallHandle, CallState, Waiters
from sluicegate.matching import Resolution, throttle_key, throttle_owner
from sluicegate.outcomes import AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.queues import PURGED, ThrottlingQueue
from sluicegate.quotas import Quotas
from sluicegate.records import ConfigKind, ConfigRecord
from sluicegate.reporting import Counters, Reporter
from sluicegate.retry import RetryPolicy
from sluicegate.rules import ThrottlingRule
from sluicegate.settings import Settings
from sluicegate.storage import Backend, Grant, QueuedCall
from sluicegate.throttle import QueueState, Throttling
from sluicegate.transport import Transport
from sluicegate.wiring import Storage, default_transport, open_backend

log = logging.getLogger(__name__)


class Gate:
    """Runs journeys' calls to external systems through the guardrails.

    Open one with :meth:`open`; it owns its storage, transport and background tasks and
    closes them on exit. Calls queued by throttling are stored in ``data_dir`` and are
    delivered after a restart (at least once). ``quotas`` counts each org's calls in
    flight (:mod:`sluicegate.quotas`): a layer above may check it before it keeps a call.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        rules: RuleBook,
        settings: Settings,
        clock: Clock,
        transport: Transport,
        reporter: Reporter | None,
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.counters = Counters()
        self._backend = backend
        self._clock = clock
        self._transport = transport
        self._reporter = reporter
        self._policy = EgressPolicy(settings)
        self._throttling = Throttling(
            clock=clock, slots=backend.slots, store=backend.queue,
            max_age=settings.queue_max_age, guard_ms=settings.send_guard_ms,
            dispatched=self._dispatched, expired=self._expired,
        )  # fmt: skip
        self._executor = Executor(
            clock=clock, transport=transport, slots=backend.slots,
            throttling=self._throttling, connections=backend.connections, policy=self._policy,
            retry=RetryPolicy(schedule=settings.retry_schedule), resolve=rules.resolve,
            max_redirects=settings.max_redirects,
        )  # fmt: skip
        self.quotas = Quotas(max_in_flight=settings.max_in_flight_per_org,
                              max_queued=settings.max_queued_per_org,
                              queued=self._throttling.queued)  # fmt: skip
        self._running: dict[str, asyncio.Task[object]] = {}
        self._waiters = Waiters()  # held weakly: a dropped handle frees its own
        self._closing = False
        rules.on_change(self._rule_changed)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        data_dir: Storage = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        transport: Transport | None = None,
        reporter: Reporter | None = None,
    ) -> AsyncIterator[Gate]:
        """Open a gate on ``data_dir`` (SQLite), in memory when it is None, or on storage
        :class:`~sluicegate.wiring.Shared` by several instances (Redis + PostgreSQL)."""
        settings = settings or Settings()
        clock = clock or SystemClock()
        backend = await open_backend(data_dir, settings.data_keys)
        try:
            rules = RuleBook(backend.configs, clock, settings)
            await rules.load()
            transport = transport or default_transport(settings, EgressPolicy(settings))
            gate = cls(
                backend=backend,
                rules=rules,
                settings=settings,
                clock=clock,
                transport=transport,
                reporter=reporter,
            )
            following = asyncio.create_task(backend.configs.follow(rules.reload))
            try:
                await backend.recover(int(clock.now() * 1000))
                await gate._throttling.start(gate._deployed_rate)
                yield gate
            finally:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
                await gate.aclose()
        finally:
            await backend.aclose()

    @overload
    async def call(self, call: Call, /) -> CallResult: ...
    @overload
    async def call(self, **args: Unpack[CallArgs]) -> CallResult: ...
    # mypy cannot match ``**args: Any`` to an overload that unpacks a TypedDict (a false
    # positive of its overload check): the overloads above are what callers see.
    async def call(self, call: Call | None = None, /, **args: Any) -> CallResult:  # type: ignore[misc]
        """Make a call through the guardrails and return how it ended.

        Takes a :class:`~sluicegate.call.Call` built with ``Call.build(...)``, or its parts
        (:class:`~sluicegate.call.CallArgs`) as keywords. Raises
        :class:`~sluicegate.errors.InvalidCall` for input that cannot be a call, and
        :class:`~sluicegate.errors.TooManyCalls` when its org is over a quota
        (:mod:`sluicegate.quotas`); every other ending, including capping and timeouts, is
        a returned outcome.
        """
        call = call if call is not None else Call.build(**args)
        call_id = new_call_id(self._clock.now())
        resolution = self._door(call, call_id)
        if isinstance(resolution, CallResult):
            return resolution
        org = call.org
        self.quotas.check(org, throttled=resolution.throttle is not None)
        grant = None
        if resolution.throttle is not None:
            future = self._waiters.future(call_id)  # before it is queued, dispatched, ended
            grant = await self._throttling.admit(call_id, call, resolution.throttle)
            if grant is None:
                return await self._queued(future, call_id)
        # What _run does, inline: a call that runs at once goes through one coroutine less.
        self.quotas.started(org)
        try:
            result = await self._executor.run(call, resolution, call_id=call_id, grant=grant,
                                              interrupted=self._report)  # fmt: skip
        finally:
            self.quotas.ended(org)
        return self._report(call, result)

    @overload
    async def submit(self, call: Call, /, *, call_id: str | None = None) -> CallHandle: ...
    @overload
    async def submit(
        self, *, call_id: str | None = None, **args: Unpack[CallArgs]
    ) -> CallHandle: ...
    async def submit(  # type: ignore[misc]  # as for call()
        self, call: Call | None = None, /, *, call_id: str | None = None, **args: Any
    ) -> CallHandle:
        """Start a call and return once it is durably queued, running or already ended.

        ``call_id`` names the call (it must be unique); by default a new one
        (:func:`~sluicegate.call.new_call_id`). The handle tells where the call stands and
        waits for its result.
        """
        call = call if call is not None else Call.build(**args)
        call_id = call_id or new_call_id(self._clock.now())
        future = self._waiters.future(call_id)
        resolution = self._door(call, call_id)
        queued = False
        if not isinstance(resolution, CallResult):
            self.quotas.check(call.org, throttled=resolution.throttle is not None)
            grant = None
            if resolution.throttle is not None:
                grant = await self._throttling.admit(call_id, call, resolution.throttle)
                queued = grant is None
            if not queued:
                self._spawn(call.org, call_id, self._run(call, call_id, resolution, grant))
        return CallHandle(call_id, future, queued=queued, running=self._running)

    def watch(self, call_id: str) -> CallHandle:
        """A handle on a call submitted earlier (here, or before a restart) that may still
        be queued or running: its result arrives if the call ends while it is held."""
        future = self._waiters.future(call_id)
        return CallHandle(call_id, future, queued=True, running=self._running)

    def running(self, call_id: str) -> bool:
        """Whether the call ``call_id`` runs in the background of this gate right now."""
        return call_id in self._running

    async def find(self, call_id: str) -> CallState | None:
        """Where a submitted call stands, ``None`` once it ended (or was never seen)."""
        if call_id in self._running:
            return "running"
        stored = await self._backend.queue.find(call_id)
        if stored is None:
            return None
        return "queued" if stored == "queued" else "running"  # claimed: being handed over

    async def queues(self) -> list[QueueState]:
        """Depth, rate and oldest age of every throttling queue with calls waiting, or
        paused."""
        return await self._throttling.states()

    def queue(self, key: str) -> ThrottlingQueue:
        """The throttling queue ``key`` (a :class:`QueueState`'s), to pause, resume or purge
        (:mod:`sluicegate.queues`). A purged call ends ``expired``, "purged by an operator"."""
        return ThrottlingQueue(key, throttling=self._throttling, store=self._backend.queue,
                               ended=partial(self._expired, why=PURGED))  # fmt: skip

    async def slots_in_use(self, key: str) -> int:
        """Slots held right now of the rate rule ``key`` (see :mod:`sluicegate.matching`)."""
        return await self._backend.slots.in_use(key, int(self._clock.now() * 1000))

    @property
    def failures(self) -> int:
        """Times a background task of this gate (a queue's dispatcher) failed and was
        started again."""
        return self._throttling.failures

    def connections_in_use(self, key: str) -> int:
        """Requests holding one of the connections of ``key`` right now."""
        return self._backend.connections.in_use(key)

    def _door(self, call: Call, call_id: str) -> Resolution | CallResult:
        """What applies to ``call``, or how it ended at the door (``blocked``)."""
        target = call.target
        reason = self._policy.check_origin(target.scheme, target.netloc)
        if reason is None:
            return self.rules.resolve(call)
        error = AttemptError(kind=ErrorKind.BLOCKED, message=reason)
        return self._report(call, _ended(call_id, Outcome.BLOCKED, target.host, error))

    async def _queued(self, future: asyncio.Future[CallResult], call_id: str) -> CallResult:
        """The result of a queued call, once a dispatcher has run it. A caller who gives up
        waiting takes the call out of its queue (unless the gate is closing)."""
        try:
            return await future
        except asyncio.CancelledError:
            if not self._closing:
                await self._backend.queue.remove(call_id)
            raise

    async def _run(
        self, call: Call, call_id: str, resolution: Resolution, grant: Grant | None
    ) -> CallResult:
        """Run a call let in, and report it."""
        result = await self._executor.run(call, resolution, call_id=call_id, grant=grant,
                                          interrupted=self._report)  # fmt: skip
        return self._report(call, result)

    async def _run_stored(self, item: QueuedCall, grant: Grant) -> None:
        """Run a call from its queue; it leaves the store once reported (its result first,
        so a crash in between delivers it again, never loses it). One cut short by a stop
        stays stored, runs again after restart, is reported then. One whose first request
        could not be decided (a shared store unavailable) goes back to its place."""
        call, call_id = item.call, item.call_id
        try:
            result = await self._executor.run(
                call, self.rules.resolve(call), call_id=call_id, grant=grant,
                queued_ms=self._queued_ms(item), stored=True,
            )  # fmt: skip
        except StorageError:
            try:
                await self._backend.queue.unclaim(call_id)
            except StorageError as exc:  # its claim ends on its own (a shared store's lease)
                log.warning("queued call %s not put back yet: %s", call_id, exc)
            return
        self._report(call, result)
        if self._reporter is not None:
            await self._reporter.written()
        await self._backend.queue.remove(call_id)

    def _dispatched(self, item: QueuedCall, grant: Grant) -> None:
        """A queue's dispatcher hands over its head call with its slot: run it."""
        self._spawn(item.call.org, item.call_id, self._run_stored(item, grant))

    def _expired(self, item: QueuedCall, why: str = "six hours in the throttling queue") -> None:
        """A call left its queue unsent: it ends ``expired``, ``why`` its error message."""
        error = AttemptError(kind=ErrorKind.EXPIRED, message=why)
        endpoint = self.rules.resolve(item.call).endpoint
        self._report(item.call, _ended(item.call_id, Outcome.EXPIRED, endpoint, error,
                                       queued_ms=self._queued_ms(item)))  # fmt: skip

    def _queued_ms(self, item: QueuedCall) -> float:
        return max(0.0, (self._clock.now() - item.enqueued_at) * 1000)

    def _spawn(self, org: str, call_id: str, work: Coroutine[Any, Any, object]) -> None:
        """Run a call of ``org`` in the background; its handle's future learns how it
        ended (a call put back in its queue keeps its waiters)."""
        task = asyncio.create_task(work, name=f"call {call_id}")
        self._running[call_id] = task
        self.quotas.started(org)
        task.add_done_callback(partial(self._task_done, org, call_id))

    def _task_done(self, org: str, call_id: str, task: asyncio.Task[object]) -> None:
        self.quotas.ended(org)
        if self._running.get(call_id) is task:
            del self._running[call_id]
        error = None if task.cancelled() else task.exception()
        if error is None and not task.cancelled():
            return  # reported (its waiters were told), or back in its queue (they still wait)
        future = self._waiters.pop(call_id)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        elif task.cancelled():
            future.cancel()

    def _report(self, call: Call, result: CallResult) -> CallResult:
        self.counters.record(call, result)
        if self._reporter is not None:
            self._reporter.record(call, result)
        if self._waiters:  # most calls have nobody waiting but their caller
            future = self._waiters.pop(result.call_id)
            if future is not None and not future.done():
                future.set_result(result)
        return result

    def _deployed_rate(self, key: str) -> int | None:
        rule = self.rules.enforced(throttle_owner(key)[1])
        return rule.max_throughput if isinstance(rule, ThrottlingRule) else None

    def _rule_changed(self, record: ConfigRecord | None) -> None:
        """A deployed throttling edit takes effect at once on its queue."""
        if record is not None and record.kind is ConfigKind.THROTTLING:
            rule = record.deployed_rule
            if isinstance(rule, ThrottlingRule):
                self._throttling.set_rate(throttle_key(record.org, record.uid), rule.max_throughput)

    async def aclose(self) -> None:
        """Stop. Calls still queued stay in the store (the memory backend's go with it);
        running calls are cancelled (those from a queue stay stored, the others end
        ``network_error``); whoever still waits for a call is cancelled."""
        self._closing = True
        await self._throttling.aclose()
        await asyncio.sleep(0)  # every call started: its cancellation gives its slots back
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._waiters.cancel()
        await self._transport.aclose()


def _ended(
    call_id: str,
    outcome: Outcome,
    endpoint: str,
    error: AttemptError,
    *,
    queued_ms: float = 0.0,
) -> CallResult:
    """The result of a call that ended before any request."""
    return CallResult(
        call_id=call_id, outcome=outcome, attempts=0, retries=0, slots=0, queued_ms=queued_ms,
        execution_ms=0.0, endpoint=endpoint, error=error,
    )  # fmt: skip
