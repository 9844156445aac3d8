"""The Gate: the one entry point. It orders the guardrails of every call.

1. the egress policy (a refused URL ends ``blocked`` before anything else);
2. throttling: a call over the rate is journaled durably, then waits in FIFO order;
3. capping: no slot ends the call ``capped`` at once;
4. the executor: attempts and retries inside the journey's budget;
5. reporting: every call is counted exactly once, whatever its outcome.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sluicegate.call import Call
from sluicegate.clock import Clock, SystemClock
from sluicegate.configs import ConfigKind, ConfigRecord, RuleBook
from sluicegate.connections import ConnectionLimits
from sluicegate.egress import EgressPolicy
from sluicegate.executor import Executor
from sluicegate.matching import Resolution
from sluicegate.outcomes import AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.reporting import Counters, Reporter
from sluicegate.retry import RetryPolicy
from sluicegate.settings import Settings
from sluicegate.storage import Backend, QueuedCall
from sluicegate.throttle import ThrottleQueue
from sluicegate.transport import Transport
from sluicegate.wiring import default_transport, open_backend

State = Literal["queued", "running", "done"]


class CallHandle:
    """A call submitted without waiting for its end: its id, its state, its result."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.state: State = "queued"
        self._accepted = asyncio.Event()
        self._result: asyncio.Future[CallResult] = asyncio.get_running_loop().create_future()

    def done(self) -> bool:
        return self._result.done()

    async def result(self) -> CallResult:
        """Wait for the call to end; cancelling this wait does not cancel the call."""
        return await asyncio.shield(self._result)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueState:
    """A throttling queue as the reports show it."""

    key: str
    rate: int
    depth: int
    oldest_age: float | None


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
        self._queues: dict[str, ThrottleQueue] = {}
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
        rules.on_change(self._rule_changed)

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

    async def call(
        self,
        *,
        org: str,
        sandbox: str,
        journey: str,
        service: str,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        timeout_seconds: float | None = None,
    ) -> CallResult:
        """Make a call through the guardrails and return how it ended.

        Raises :class:`~sluicegate.errors.InvalidCall` for input that cannot be a call;
        every other ending, including capping and timeouts, is a returned outcome.
        """
        call = Call.build(
            org=org, sandbox=sandbox, journey=journey, service=service, method=method,
            url=url, headers=headers, body=body, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        return await self._execute(call, _new_id(), None)

    async def submit(
        self,
        *,
        org: str,
        sandbox: str,
        journey: str,
        service: str,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | None = None,
        timeout_seconds: float | None = None,
        call_id: str | None = None,
    ) -> CallHandle:
        """Start a call and return once it is durably queued, running or already ended."""
        call = Call.build(
            org=org, sandbox=sandbox, journey=journey, service=service, method=method,
            url=url, headers=headers, body=body, timeout_seconds=timeout_seconds,
        )  # fmt: skip
        handle = CallHandle(call_id or _new_id())
        self._spawn(handle, self._execute(call, handle.call_id, handle))
        await handle._accepted.wait()
        return handle

    def handle(self, call_id: str) -> CallHandle | None:
        """The handle of a submitted or recovered call that has not ended yet."""
        return self._handles.get(call_id)

    def queues(self) -> list[QueueState]:
        now = self._clock.now()
        return [
            QueueState(
                key=queue.key,
                rate=queue.rate,
                depth=len(queue),
                oldest_age=None if (oldest := queue.oldest()) is None else now - oldest,
            )
            for queue in self._queues.values()
        ]

    def _spawn(self, handle: CallHandle, work: Coroutine[Any, Any, CallResult]) -> None:
        self._handles[handle.call_id] = handle
        task = asyncio.create_task(work)
        self._tasks.add(task)

        def ended(task: asyncio.Task[CallResult]) -> None:
            self._tasks.discard(task)
            self._handles.pop(handle.call_id, None)
            handle._accepted.set()
            if task.cancelled():
                handle._result.cancel()
            elif (exc := task.exception()) is not None:
                handle._result.set_exception(exc)
            else:
                handle._result.set_result(task.result())

        task.add_done_callback(ended)

    async def _execute(self, call: Call, call_id: str, handle: CallHandle | None) -> CallResult:
        reason = self._policy.check_url(call.url)
        if reason is not None:
            error = AttemptError(kind=ErrorKind.BLOCKED, message=reason)
            endpoint = call.parts.hostname or ""
            return self._report(call, _ended(call_id, Outcome.BLOCKED, endpoint, error))
        resolution = self.rules.resolve(call)
        target = resolution.throttle
        if target is None:
            return await self._admitted(call, call_id, resolution, None, None, handle)
        queue = self._queue(target.key, target.rate)
        if await queue.try_now():
            return await self._admitted(call, call_id, resolution, queue, None, handle)
        enqueued_at = self._clock.now()
        await self._backend.queue.push(
            QueuedCall(
                call_id=call_id,
                queue=queue.key,
                call=call,
                enqueued_at=enqueued_at,
                rate=queue.rate,
            )
        )
        admission = queue.enqueue(enqueued_at)
        if handle is not None:
            handle._accepted.set()
        return await self._admitted(
            call, call_id, resolution, queue, admission, handle, enqueued_at=enqueued_at
        )

    async def _admitted(
        self,
        call: Call,
        call_id: str,
        resolution: Resolution,
        queue: ThrottleQueue | None,
        admission: asyncio.Future[bool] | None,
        handle: CallHandle | None,
        enqueued_at: float | None = None,
    ) -> CallResult:
        """The rest of a call once it is either queued (``admission``) or holds its
        throttling slot (``queue`` without ``admission``), or is not throttled at all."""
        slots = 0 if queue is None else 1
        queued_ms = 0.0
        finished = False
        try:
            if admission is not None:
                granted = await admission
                start = enqueued_at if enqueued_at is not None else self._clock.now()
                queued_ms = max(0.0, (self._clock.now() - start) * 1000)
                if not granted:
                    result = _ended(call_id, Outcome.EXPIRED, resolution.endpoint, _expired(),
                                    queued_ms=queued_ms)  # fmt: skip
                    finished = True
                    return self._report(call, result)
            if handle is not None:
                handle.state = "running"
                handle._accepted.set()
            if resolution.capping:
                now_ms = int(self._clock.now() * 1000)
                if await self._backend.slots.acquire(resolution.capping, now_ms):
                    error = AttemptError(kind=ErrorKind.CAPPED, message="no capping slot")
                    result = _ended(call_id, Outcome.CAPPED, resolution.endpoint, error,
                                    queued_ms=queued_ms, slots=slots)  # fmt: skip
                    finished = True
                    return self._report(call, result)
                slots += 1
            result = await self._executor.run(
                call, resolution, call_id=call_id, queue=queue, queued_ms=queued_ms, slots=slots
            )
            finished = True
            return self._report(call, result)
        finally:
            if handle is not None:
                handle.state = "done"
            # A call cut short by a shutdown stays journaled and runs again after restart.
            if admission is not None and (finished or not self._closing):
                await self._backend.queue.remove(call_id)

    def _queue(self, key: str, rate: int) -> ThrottleQueue:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = ThrottleQueue(
                key=key, rate=rate, clock=self._clock, slots=self._backend.slots,
                max_age=self.settings.queue_max_age,
            )  # fmt: skip
        else:
            queue.rate = rate
        return queue

    def _rule_changed(self, record: ConfigRecord | None) -> None:
        """A deployed throttling edit takes effect at once on its queue."""
        if record is None or record.kind is not ConfigKind.THROTTLING:
            return
        rule = record.deployed_rule
        key = f"thr:{record.org}:{record.uid}"
        if rule is not None and key in self._queues:
            self._queues[key].rate = rule.max_throughput  # type: ignore[union-attr]

    async def _recover(self) -> None:
        """Queue again, in their original order, the calls journaled before a restart."""
        for item in await self._backend.queue.pending():
            queue = self._queue(item.queue, item.rate)
            admission = queue.enqueue(item.enqueued_at)
            handle = CallHandle(item.call_id)
            resolution = self.rules.resolve(item.call)
            work = self._admitted(item.call, item.call_id, resolution, queue, admission, handle,
                                  enqueued_at=item.enqueued_at)  # fmt: skip
            self._spawn(handle, work)

    def _report(self, call: Call, result: CallResult) -> CallResult:
        self.counters.record(call, result)
        if self._reporter is not None:
            self._reporter.record(call, result)
        return result

    async def aclose(self) -> None:
        """Stop: queued calls stay journaled; running calls are cancelled."""
        self._closing = True
        for queue in self._queues.values():
            await queue.aclose()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._transport.aclose()


def _new_id() -> str:
    return uuid.uuid4().hex


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
