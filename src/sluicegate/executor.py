"""Runs a call that has its slots: attempts inside one budget, retries, one outcome.

The order of a retry is: wait (schedule or ``Retry-After``), then a slot from every rule
that applies (throttling first, ahead of queued first attempts; then capping, which
ends the call ``capped`` when it has none), then a connection, then the attempt. One
deadline, the budget's, covers all of it: whatever is running when it passes (an
attempt, a wait) is cancelled and the call ends ``timedout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sluicegate.budget import Budget
from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.connections import ConnectionLimits
from sluicegate.errors import EgressBlocked, TransportError
from sluicegate.matching import Resolution
from sluicegate.outcomes import INTERRUPTED, AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.retry import RetryPolicy, is_retryable_status
from sluicegate.storage import SlotStore
from sluicegate.throttle import ThrottleQueue
from sluicegate.transport import Request, Response, Transport


@dataclass(slots=True)
class _Progress:
    """What one call has done so far; turned into the frozen result at the end."""

    attempts: int = 0
    slots: int = 0
    waiting: bool = False
    error: AttemptError | None = None
    origin: AttemptError | None = None
    response: Response | None = None

    def failed(self, error: AttemptError) -> None:
        self.origin, self.error = self.error, error


class Executor:
    """Makes the attempts of calls through one transport."""

    def __init__(
        self,
        *,
        clock: Clock,
        transport: Transport,
        slots: SlotStore,
        connections: ConnectionLimits,
        retry: RetryPolicy,
    ) -> None:
        self._clock = clock
        self._transport = transport
        self._slots = slots
        self._connections = connections
        self._retry = retry

    async def run(
        self,
        call: Call,
        resolution: Resolution,
        *,
        call_id: str,
        queue: ThrottleQueue | None,
        queued_ms: float,
        slots: int,
        interrupted: Callable[[CallResult], object] | None = None,
    ) -> CallResult:
        """Run ``call``, whose first attempt already holds ``slots`` grants.

        A call cancelled while running (its caller gave up, or the engine is stopping) is
        handed to ``interrupted`` as a ``network_error``, since nobody can tell whether the
        external system received it; the cancellation then goes on.
        """
        budget = Budget.start(self._clock, call.timeout_seconds)
        progress = _Progress(slots=slots)
        request = Request(method=call.method, url=call.url, headers=call.headers, body=call.body)
        try:
            async with self._clock.deadline(budget.deadline):
                outcome = await self._attempts(request, resolution, queue, budget, progress)
        except TimeoutError:
            if progress.waiting:
                progress.failed(_timeout("the budget ended while waiting to retry"))
            else:
                progress.failed(_timeout("the attempt was cancelled at the end of the budget"))
            outcome = Outcome.TIMEDOUT
        except asyncio.CancelledError:
            if interrupted is not None:
                progress.failed(AttemptError(kind=ErrorKind.NETWORK, message=INTERRUPTED))
                interrupted(_result(call_id, Outcome.NETWORK_ERROR, progress, budget,
                                    resolution, queued_ms))  # fmt: skip
            raise
        return _result(call_id, outcome, progress, budget, resolution, queued_ms)

    async def _attempts(
        self,
        request: Request,
        resolution: Resolution,
        queue: ThrottleQueue | None,
        budget: Budget,
        progress: _Progress,
    ) -> Outcome:
        """Attempts and retries until an outcome (the caller enforces the deadline)."""
        while True:
            progress.attempts += 1
            failure = await self._attempt(request, resolution, progress)
            if isinstance(failure, Outcome):
                return failure
            last = Outcome.NETWORK_ERROR if failure.status is None else Outcome.HTTP_ERROR
            if progress.attempts > self._retry.max_retries:
                return last
            headers = None
            if failure.status is not None and progress.response is not None:
                headers = progress.response.headers
            wait = self._retry.wait(progress.attempts - 1, headers, self._clock.now())
            if not budget.fits(wait.seconds):
                if wait.asked_by_server:
                    return last
                progress.failed(_timeout("the budget ends before the next retry"))
                return Outcome.TIMEDOUT
            progress.waiting = True
            outcome = await self._retry_slots(resolution, queue, wait.seconds, progress)
            progress.waiting = False
            if outcome is not None:
                return outcome

    async def _attempt(
        self, request: Request, resolution: Resolution, progress: _Progress
    ) -> Outcome | AttemptError:
        """One attempt: the final outcome, or the error of a failure a retry may fix."""
        progress.response = None  # the result carries the last attempt's response, if any
        try:
            if resolution.max_connections is None:
                response = await self._transport.send(request)
            else:
                async with self._connections.hold(
                    resolution.connection_key, resolution.max_connections
                ):
                    response = await self._transport.send(request)
        except EgressBlocked as exc:
            progress.failed(AttemptError(kind=ErrorKind.BLOCKED, message=str(exc)))
            return Outcome.BLOCKED
        except TransportError as exc:
            error = AttemptError(kind=ErrorKind.NETWORK, message=str(exc))
        except Exception as exc:  # a transport bug must still end as an outcome, not a crash
            message = f"unexpected {type(exc).__name__}: {exc}"
            error = AttemptError(kind=ErrorKind.NETWORK, message=message)
        else:
            progress.response = response
            if response.ok:
                progress.origin, progress.error = progress.error, None
                return Outcome.SUCCESS
            status = response.status
            error = AttemptError(kind=ErrorKind.HTTP, message=f"HTTP {status}", status=status)
            if not is_retryable_status(status):
                progress.failed(error)
                return Outcome.HTTP_ERROR
        progress.failed(error)
        return error

    async def _retry_slots(
        self,
        resolution: Resolution,
        queue: ThrottleQueue | None,
        wait: float,
        progress: _Progress,
    ) -> Outcome | None:
        """Wait, then take the retry's slots; an outcome when the call must end instead."""
        if wait > 0:
            await self._clock.sleep(wait)
        if queue is not None:
            await queue.wait_retry()
            progress.slots += 1
        if resolution.capping:
            now_ms = int(self._clock.now() * 1000)
            if await self._slots.acquire(resolution.capping, now_ms):
                progress.failed(
                    AttemptError(kind=ErrorKind.CAPPED, message="no capping slot for the retry")
                )
                return Outcome.CAPPED
            progress.slots += 1
        return None


def _timeout(message: str) -> AttemptError:
    return AttemptError(kind=ErrorKind.TIMEOUT, message=message)


def _result(
    call_id: str,
    outcome: Outcome,
    progress: _Progress,
    budget: Budget,
    resolution: Resolution,
    queued_ms: float,
) -> CallResult:
    return CallResult(
        call_id=call_id,
        outcome=outcome,
        attempts=progress.attempts,
        slots=progress.slots,
        queued_ms=queued_ms,
        execution_ms=budget.elapsed_ms(),
        endpoint=resolution.endpoint,
        error=progress.error,
        origin_error=progress.origin,
        response=progress.response,
    )
