"""The Gate: the one entry point. It orders the guardrails of every call.

1. the egress policy (a refused URL ends ``blocked`` before anything else);
2. throttling: a call over the rate is journaled durably, then waits in FIFO order;
3. capping: no slot ends the call ``capped`` at once;
4. the executor: attempts and retries inside the journey's budget;
5. reporting: every call is counted exactly once, whatever its outcome.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, Unpack

from sluicegate.call import Call, CallArgs
from sluicegate.clock import Clock, SystemClock
from sluicegate.configs import RuleBook
from sluicegate.connections import ConnectionLimits
from sluicegate.egress import EgressPolicy
from sluicegate.executor import Executor
from sluicegate.handle import CallHandle
from sluicegate.matching import Resolution
from sluicegate.outcomes import AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.reporting import Counters, Reporter
from sluicegate.retry import RetryPolicy
from sluicegate.settings import Settings
from sluicegate.storage import Backend
from sluicegate.throttle import Admission, QueueState, ThrottleQueue, Throttling
from sluicegate.transport import Transport
from sluicegate.wiring import default_transport, open_backend


class Gate:
    """Runs journeys' calls to external systems through the guardrails.

    Open one with :meth:`open`; it owns its storage, transport and background tasks and
    closes them on exit. Calls queued by throttling are journaled in ``data_dir`` and
    are delivered after a restart (at least once).
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
        self._connections = ConnectionLimits()
        self._throttling = Throttling(
            clock=clock, slots=backend.slots, journal=backend.queue,
            max_age=settings.queue_max_age,
        )  # fmt: skip
        self._handles: dict[str, CallHandle] = {}
        self._tasks: set[asyncio.Task[CallResult]] = set()
        self._closing = False
        self._executor = Executor(
            clock=clock,
            transport=transport,
            slots=backend.slots,
            connections=self._connections,
            retry=RetryPolicy(schedule=settings.retry_schedule),
        )
        rules.on_change(self._throttling.rule_changed)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        data_dir: str | Path | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        transport: Transport | None = None,
        reporter: Reporter | None = None,
    ) -> AsyncIterator[Gate]:
        """Open a gate on ``data_dir`` (SQLite), or in memory when it is None."""
        settings = settings or Settings()
        clock = clock or SystemClock()
        backend = await open_backend(data_dir)
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
            try:
                await gate._recover()
                yield gate
            finally:
                await gate.aclose()
        finally:
            await backend.aclose()

    async def call(self, **args: Unpack[CallArgs]) -> CallResult:
        """Make a call through the guardrails and return how it ended.

        Takes the parts of :class:`~sluicegate.call.CallArgs` as keywords. Raises
        :class:`~sluicegate.errors.InvalidCall` for input that cannot be a call; every other
        ending, including capping and timeouts, is a returned outcome.
        """
        return await self._execute(Call.build(**args), _new_id(), None)

    async def submit(self, *, call_id: str | None = None, **args: Unpack[CallArgs]) -> CallHandle:
        """Start a call and return once it is durably queued, running or already ended."""
        call = Call.build(**args)
        handle = CallHandle(call_id or _new_id())
        self._spawn(handle, self._execute(call, handle.call_id, handle))
        await handle.accepted()
        return handle

    def handle(self, call_id: str) -> CallHandle | None:
        """The handle of a submitted or recovered call that has not ended yet."""
        return self._handles.get(call_id)

    def queues(self) -> list[QueueState]:
        """Depth, rate and oldest age of every throttling queue this gate has seen."""
        return self._throttling.states()

    def slots_in_use(self, key: str) -> int | None:
        """Grants inside the current window of the rate rule ``key`` (a slot key of
        :mod:`sluicegate.matching`), or ``None`` when the slot store cannot count them."""
        # Counting is not part of the SlotStore protocol; the memory store offers it.
        count = getattr(self._backend.slots, "in_use", None)
        if count is None:
            return None
        return int(count(key, int(self._clock.now() * 1000)))

    def connections_in_use(self, key: str) -> int:
        """Attempts holding one of the connections of ``key`` right now."""
        return self._connections.in_use(key)

    def _spawn(self, handle: CallHandle, work: Coroutine[Any, Any, CallResult]) -> None:
        """Run a call in the background, reachable by its id until it ends."""
        self._handles[handle.call_id] = handle
        task = handle.run(work)
        self._tasks.add(task)
        task.add_done_callback(lambda task: self._ended(task, handle.call_id))

    def _ended(self, task: asyncio.Task[CallResult], call_id: str) -> None:
        self._tasks.discard(task)
        self._handles.pop(call_id, None)

    async def _execute(self, call: Call, call_id: str, handle: CallHandle | None) -> CallResult:
        reason = self._policy.check_url(call.url)
        if reason is not None:
            error = AttemptError(kind=ErrorKind.BLOCKED, message=reason)
            endpoint = call.parts.hostname or ""
            return self._report(call, _ended(call_id, Outcome.BLOCKED, endpoint, error))
        resolution = self.rules.resolve(call)
        if resolution.throttle is None:
            return await self._run(call, call_id, resolution, None, handle)
        queue, admission = await self._throttling.admit(call_id, call, resolution.throttle)
        if admission is None:
            return await self._run(call, call_id, resolution, queue, handle)
        if handle is not None:
            handle.accept("queued")
        return await self._queued(call, call_id, resolution, queue, admission, handle)

    async def _queued(
        self,
        call: Call,
        call_id: str,
        resolution: Resolution,
        queue: ThrottleQueue,
        admission: Admission,
        handle: CallHandle | None,
    ) -> CallResult:
        """A journaled call: wait for its turn, run it, then drop it from the journal. One
        cut short by a shutdown stays journaled, runs again after restart, is reported then."""
        finished = False
        try:
            granted = await admission.granted
            queued_ms = max(0.0, (self._clock.now() - admission.enqueued_at) * 1000)
            if granted:
                result = await self._run(call, call_id, resolution, queue, handle,
                                         queued_ms=queued_ms, journaled=True)  # fmt: skip
            else:
                result = self._report(call, _ended(call_id, Outcome.EXPIRED, resolution.endpoint,
                                                   _expired(), queued_ms=queued_ms))  # fmt: skip
            finished = True
            return result
        finally:
            if finished or not self._closing:
                await self._throttling.forget(call_id)

    async def _run(
        self,
        call: Call,
        call_id: str,
        resolution: Resolution,
        queue: ThrottleQueue | None,
        handle: CallHandle | None,
        *,
        queued_ms: float = 0.0,
        journaled: bool = False,
    ) -> CallResult:
        """A call that holds its throttling slot (``queue``) or needs none: capping, then
        the executor."""
        if handle is not None:
            handle.accept("running")
        slots = 0 if queue is None else 1
        if resolution.capping:
            now_ms = int(self._clock.now() * 1000)
            if await self._backend.slots.acquire(resolution.capping, now_ms):
                error = AttemptError(kind=ErrorKind.CAPPED, message="no capping slot")
                capped = _ended(call_id, Outcome.CAPPED, resolution.endpoint, error,
                                queued_ms=queued_ms, slots=slots)  # fmt: skip
                return self._report(call, capped)
            slots += 1
        result = await self._executor.run(
            call, resolution, call_id=call_id, queue=queue, queued_ms=queued_ms, slots=slots,
            interrupted=None if journaled else partial(self._report, call),
        )  # fmt: skip
        return self._report(call, result)

    async def _recover(self) -> None:
        """Run again the calls journaled before a restart (they are queued in order)."""
        for item, queue, admission in await self._throttling.recover():
            handle = CallHandle(item.call_id)
            resolution = self.rules.resolve(item.call)
            self._spawn(
                handle,
                self._queued(item.call, item.call_id, resolution, queue, admission, handle),
            )

    def _report(self, call: Call, result: CallResult) -> CallResult:
        self.counters.record(call, result)
        if self._reporter is not None:
            self._reporter.record(call, result)
        return result

    async def aclose(self) -> None:
        """Stop: queued calls stay journaled; running calls are cancelled."""
        self._closing = True
        await self._throttling.aclose()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._transport.aclose()


def _new_id() -> str:
    """32 random hex digits, as ``uuid4().hex`` but a fifth of its cost."""
    return os.urandom(16).hex()


def _expired() -> AttemptError:
    return AttemptError(kind=ErrorKind.EXPIRED, message="six hours in the throttling queue")


def _ended(
    call_id: str,
    outcome: Outcome,
    endpoint: str,
    error: AttemptError,
    *,
    queued_ms: float = 0.0,
    slots: int = 0,
) -> CallResult:
    """The result of a call that ended before any attempt."""
    return CallResult(
        call_id=call_id, outcome=outcome, attempts=0, slots=slots, queued_ms=queued_ms,
        execution_ms=0.0, endpoint=endpoint, error=error,
    )  # fmt: skip
