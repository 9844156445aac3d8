"""Runs a call: every request it sends holds its slots, inside one budget, to one outcome.

A call sends a first attempt, at most three retries, and the redirect hops any of them
leads to. Every one of those requests goes through the same slot step
(:meth:`Executor._request`): a slot of each rule that applies to its own URL, throttling
first (the first attempt's comes from the queue or the admission that let the call in;
any other waits ahead of the queue's first attempts), then capping, where no slot ends the
call ``capped``; then a connection, then the send. The slots count from the moment the
request left (:class:`_Watch`); a request that never left gives them back, and is no
attempt when the egress policy refused it before it could leave.

The order of a retry is: wait (schedule or ``Retry-After``), then the slot step. One
deadline, the budget's, covers all of it: whatever is running when it passes (a request,
a wait) is cancelled and the call ends ``timedout``. Every request carries an
``Idempotency-Key`` header, the call's id, the same on every attempt and after a restart,
so the external system can drop the duplicates at-least-once delivery allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sluicegate.budget import Budget
from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.egress import EgressPolicy
from sluicegate.errors import EgressBlocked, StorageError, TransportError
from sluicegate.matching import Resolution
from sluicegate.outcomes import INTERRUPTED, AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.redirects import REDIRECTS, next_hop
from sluicegate.retry import RetryPolicy, is_retryable_status
from sluicegate.storage import ConnectionStore, Grant, SlotStore, Wait
from sluicegate.throttle import Throttling
from sluicegate.transport import Request, Response, Transport

IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Answers whose ``Retry-After`` pauses the endpoint for every call, on every instance.
PAUSING_STATUSES = frozenset({429, 503})


@dataclass(slots=True)
class _Progress:
    """What one call has done so far; turned into the frozen result at the end."""

    held: Grant | None  # the first attempt's throttling slot, until a request takes it
    stored: bool = False  # from a queue: without a capping decision, it goes back there
    attempts: int = 0
    retries: int = 0
    retrying: bool = False  # a retry is due: its first request that leaves makes it one
    slots: int = 0
    waiting: bool = False
    error: AttemptError | None = None
    origin: AttemptError | None = None
    response: Response | None = None

    def failed(self, error: AttemptError) -> None:
        self.origin, self.error = self.error, error


@dataclass(slots=True)
class _Watch:
    """The :class:`~sluicegate.transport.Sending` of one request: the slots it holds
    count from the moment it left."""

    store: SlotStore
    clock: Clock
    grants: list[Grant] = field(default_factory=list)
    started: bool = False
    sent: bool = False

    async def start(self) -> None:
        if self.started:  # a transport must never send a request twice on one slot
            raise TransportError("the transport tried to send the request a second time")
        for grant in self.grants:
            if grant.ticket:  # ticket 0: nothing to record
                await self.store.recorded(grant)
        self.started = True  # from here on, bytes may leave

    def done(self) -> None:
        if self.started and not self.sent:
            self.sent = True
            sent_ms = int(self.clock.now() * 1000)
            for grant in self.grants:
                self.store.sent(grant, sent_ms)

    def settle(self) -> int:
        """Stamp the slots of a request that started leaving (late is safe: the slot is
        held longer), give back those of one that never did; the number kept."""
        if not self.started:
            for grant in self.grants:
                self.store.release(grant)
            return 0
        if not self.sent:
            self.done()
        return len(self.grants)


class Executor:
    """Makes the requests of calls through one transport."""

    def __init__(
        self,
        *,
        clock: Clock,
        transport: Transport,
        slots: SlotStore,
        throttling: Throttling,
        connections: ConnectionStore,
        policy: EgressPolicy,
        retry: RetryPolicy,
        resolve: Callable[[Call], Resolution],
        max_redirects: int,
    ) -> None:
        self._clock = clock
        self._transport = transport
        self._slots = slots
        self._throttling = throttling
        self._connections = connections
        self._policy = policy
        self._retry = retry
        self._resolve = resolve
        self._max_redirects = max_redirects

    async def run(
        self,
        call: Call,
        resolution: Resolution,
        *,
        call_id: str,
        grant: Grant | None,
        queued_ms: float = 0.0,
        interrupted: Callable[[CallResult], object] | None = None,
        stored: bool = False,
    ) -> CallResult:
        """Run ``call``; ``grant`` is its first attempt's throttling slot, if it needs one.

        A call cancelled while running (its caller gave up, or the engine is stopping) is
        handed to ``interrupted`` as a ``network_error``, since nobody can tell whether the
        external system received it; the cancellation then goes on. A ``stored`` call (from
        a queue) whose first request gets no capping decision (a shared store unavailable)
        raises :class:`~sluicegate.errors.StorageError`: it has not started, and goes back
        to its queue.
        """
        budget = Budget.start(self._clock, call.timeout_seconds)
        progress = _Progress(held=grant, stored=stored)
        headers = call.headers
        if not headers:
            headers = {IDEMPOTENCY_HEADER: call_id}
        elif not any(name.lower() == "idempotency-key" for name in headers):  # theirs wins
            headers = {**headers, IDEMPOTENCY_HEADER: call_id}
        request = Request(method=call.method, url=call.url, headers=headers, body=call.body)
        try:
            async with self._clock.deadline(budget.deadline):
                outcome = await self._attempts(call, request, resolution, budget, progress)
        except TimeoutError:
            if progress.waiting:
                progress.failed(_timeout("the budget ended while waiting to retry or for a slot"))
            else:
                progress.failed(_timeout("the attempt was cancelled at the end of the budget"))
            outcome = Outcome.TIMEDOUT
        except asyncio.CancelledError:
            if interrupted is not None:
                progress.failed(AttemptError(kind=ErrorKind.NETWORK, message=INTERRUPTED))
                interrupted(_result(call_id, Outcome.NETWORK_ERROR, progress, budget,
                                    resolution, queued_ms))  # fmt: skip
            raise
        finally:
            if progress.held is not None:  # never reached a request
                self._slots.release(progress.held)
        return _result(call_id, outcome, progress, budget, resolution, queued_ms)

    async def _attempts(
        self,
        call: Call,
        request: Request,
        resolution: Resolution,
        budget: Budget,
        progress: _Progress,
    ) -> Outcome:
        """Attempts and retries until an outcome (the caller enforces the deadline)."""
        while True:
            answer = await self._request(request, resolution, progress)
            if isinstance(answer, Response) and answer.status in REDIRECTS:
                answer = await self._redirected(call, request, answer, progress)
            failure = _judge(answer, progress) if isinstance(answer, Response) else answer
            if isinstance(failure, Outcome):
                return failure
            last = Outcome.NETWORK_ERROR if failure.status is None else Outcome.HTTP_ERROR
            if progress.retries >= self._retry.max_retries:
                return last
            headers = None
            if failure.status is not None and progress.response is not None:
                headers = progress.response.headers
            wait = self._retry.wait(progress.retries, headers, self._clock.now())
            if wait.asked_by_server and failure.status in PAUSING_STATUSES:
                self._slots.pause(resolution.capping, int(wait.seconds * 1000), self._now_ms())
            if not budget.fits(wait.seconds):
                if wait.asked_by_server:
                    return last
                progress.failed(_timeout("the budget ends before the next retry"))
                return Outcome.TIMEDOUT
            if wait.seconds > 0:
                progress.waiting = True
                await self._clock.sleep(wait.seconds)
                progress.waiting = False
            progress.retrying = True

    async def _capping_slot(
        self, resolution: Resolution, progress: _Progress
    ) -> Grant | Wait | AttemptError:
        """A slot of every capping window of ``resolution``. While the endpoint is paused
        (a ``Retry-After``, seen by any instance), wait inside the budget. A store that
        cannot decide refuses: traffic never goes through unlimited."""
        try:
            while True:
                found = await self._slots.acquire(resolution.capping, self._now_ms())
                if not isinstance(found, Wait) or not found.paused:
                    return found
                progress.waiting = True
                await self._clock.sleep(found.ms / 1000)
                progress.waiting = False
        except StorageError as exc:
            return AttemptError(kind=ErrorKind.CAPPED, message=f"no capping decision: {exc}")

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    async def _redirected(
        self, call: Call, request: Request, response: Response, progress: _Progress
    ) -> Response | Outcome | AttemptError:
        """Follow the redirects ``response`` leads to, each hop a request with the slots
        of its own URL: the last response, or how a hop ended the attempt."""
        for _ in range(self._max_redirects):
            following = next_hop(request, response)
            if following is None:
                return response
            reason = self._policy.check_url(following.url)
            if reason is not None:
                progress.failed(AttemptError(kind=ErrorKind.BLOCKED, message=reason))
                return Outcome.BLOCKED
            request = following
            resolution = self._resolve(replace(call, method=request.method, url=request.url))
            answer = await self._request(request, resolution, progress)
            if not isinstance(answer, Response):
                return answer
            response = answer
        return response  # the last hop allowed: its 3xx is the answer

    async def _request(
        self, request: Request, resolution: Resolution, progress: _Progress
    ) -> Response | Outcome | AttemptError:
        """The slot step and one request: its response, or how it failed."""
        watch = _Watch(self._slots, self._clock)
        throttled = progress.held  # the throttling slot, if any
        progress.response = None  # the result carries the last request's response, if any
        try:
            if throttled is not None:
                watch.grants.append(throttled)
                progress.held = None
            elif resolution.throttle is not None:
                progress.waiting = True
                throttled = await self._throttling.wait_retry(resolution.throttle)
                watch.grants.append(throttled)
                progress.waiting = False
            if resolution.capping:
                found = await self._capping_slot(resolution, progress)
                if isinstance(found, AttemptError):
                    if progress.stored and not progress.attempts:
                        raise StorageError(found.message)  # the gate puts it back
                    progress.failed(found)
                    return Outcome.CAPPED
                if isinstance(found, Wait):
                    message = "no capping slot"
                    if progress.attempts:
                        message += " for the retry" if progress.retrying else " for the redirect"
                    progress.failed(AttemptError(kind=ErrorKind.CAPPED, message=message))
                    return Outcome.CAPPED
                watch.grants.append(found)
            retry, progress.retrying = progress.retrying, False
            progress.attempts += 1
            progress.retries += retry
            try:
                if resolution.max_connections is None:
                    response = await self._transport.send(request, watch)
                else:
                    async with self._connections.hold(
                        resolution.connection_key, resolution.max_connections
                    ):
                        response = await self._transport.send(request, watch)
            except EgressBlocked as exc:
                if not watch.started:  # refused before anything left: no attempt
                    progress.attempts -= 1
                    progress.retries -= retry
                progress.failed(AttemptError(kind=ErrorKind.BLOCKED, message=str(exc)))
                return Outcome.BLOCKED
            except TransportError as exc:
                error = AttemptError(kind=ErrorKind.NETWORK, message=str(exc))
            except Exception as exc:  # a transport bug must still end as an outcome, not a crash
                message = f"unexpected {type(exc).__name__}: {exc}"
                error = AttemptError(kind=ErrorKind.NETWORK, message=message)
            else:
                progress.response = response
                return response
            progress.failed(error)
            return error
        finally:
            progress.slots += watch.settle()
            if throttled is not None and not watch.started:  # given back: the queue goes on
                self._throttling.freed(throttled)


def _judge(response: Response, progress: _Progress) -> Outcome | AttemptError:
    """The outcome of a final response, or its error when a retry may fix it."""
    if response.ok:
        progress.origin, progress.error = progress.error, None
        return Outcome.SUCCESS
    status = response.status
    error = AttemptError(kind=ErrorKind.HTTP, message=f"HTTP {status}", status=status)
    progress.failed(error)
    return error if is_retryable_status(status) else Outcome.HTTP_ERROR


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
        retries=progress.retries,
        slots=progress.slots,
        queued_ms=queued_ms,
        execution_ms=budget.elapsed_ms(),
        endpoint=resolution.endpoint,
        error=progress.error,
        origin_error=progress.origin,
        response=progress.response,
    )
