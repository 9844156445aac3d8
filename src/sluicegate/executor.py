"""Runs a call: every request it sends holds its slots, inside one budget, to one outcome.

A call sends a first attempt, at most three retries, and the redirect hops any of them
leads to. Every one of those requests goes through the same slot step
(:meth:`Executor._request`): a slot of each rule that applies to its own URL, throttling
first (the first attempt's comes from the queue or the admission that let the call in;
any other waits ahead of the queue's first attempts), then capping, where no slot ends the
call ``capped``; then a connection, then the send. The slots count from the moment the
request left (:class:`~sluicegate.progress.Watch`); a request that never left gives them
back, and is no attempt when the egress policy refused it before it could leave.

The order of a retry is: wait (schedule or ``Retry-After``), then the slot step. One
deadline, the budget's, covers all of it: whatever is running when it passes (a request,
a wait) is cancelled and the call ends ``timedout``. Every request carries an
``Idempotency-Key`` header, the call's id, the same on every attempt and after a restart,
so the external system can drop the duplicates at-least-once delivery allows.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from dataclasses import replace

from sluicegate.budget import Budget
from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.egress import EgressPolicy
from sluicegate.errors import EgressBlocked, StorageError, TransportError, UnknownHost
from sluicegate.matching import Resolution
from sluicegate.outcomes import INTERRUPTED, AttemptError, CallResult, ErrorKind, Outcome
from sluicegate.progress import Progress, Watch
from sluicegate.redirects import REDIRECTS, next_hop
from sluicegate.retry import RetryPolicy, is_retryable_status
from sluicegate.storage import ConnectionStore, Grant, LocalSlotStore, SlotStore, Wait
from sluicegate.throttle import Throttling
from sluicegate.transport import Request, Response, Transport
from sluicegate.values import maker

IDEMPOTENCY_HEADER = "Idempotency-Key"
#: Answers whose ``Retry-After`` pauses the endpoint for every call, on every instance.
PAUSING_STATUSES = frozenset({429, 503})
# Positional constructors, in field order (see sluicegate.values): one of each per call.
_make_request = maker(Request)
_make_result = maker(CallResult)


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
        self._acquire_now = slots.acquire_now if isinstance(slots, LocalSlotStore) else None

    async def run(
        self,
        call: Call,
        resolution: Resolution,
        *,
        call_id: str,
        grant: Grant | None,
        queued_ms: float = 0.0,
        interrupted: Callable[[Call, CallResult], object] | None = None,
        stored: bool = False,
    ) -> CallResult:
        """Run ``call``; ``grant`` is its first attempt's throttling slot, if it needs one.

        A call cancelled while running (its caller gave up, or the engine is stopping) is
        handed to ``interrupted`` (with the call) as a ``network_error``, since nobody can
        tell whether the external system received it; the cancellation then goes on. A
        ``stored`` call (from a queue) whose first request gets no capping decision (a
        shared store unavailable) raises :class:`~sluicegate.errors.StorageError`: it has
        not started, and goes back to its queue.
        """
        budget = Budget.start(self._clock, call.timeout_seconds)
        progress = Progress(grant, stored)
        request = _make_request(call.method, call.url, _with_key(call.headers, call_id), call.body)
        try:
            async with self._clock.deadline(budget.deadline):
                # The attempts are this loop rather than a coroutine of their own: a call
                # that needs no retry then runs through one coroutine less.
                while True:
                    answer = await self._request(request, resolution, progress)
                    if isinstance(answer, Response) and answer.status in REDIRECTS:
                        answer = await self._redirected(call, request, answer, progress)
                    failure = _judge(answer, progress) if isinstance(answer, Response) else answer
                    if isinstance(failure, Outcome):
                        outcome = failure
                        break
                    wait = self._retry_wait(failure, resolution, budget, progress)
                    if isinstance(wait, Outcome):
                        outcome = wait
                        break
                    if wait > 0:
                        progress.waiting = True
                        await self._clock.sleep(wait)
                        progress.waiting = False
                    progress.retrying = True
        except TimeoutError:
            if progress.waiting:
                progress.failed(_timeout("the budget ended while waiting to retry or for a slot"))
            else:
                progress.failed(_timeout("the attempt was cancelled at the end of the budget"))
            outcome = Outcome.TIMEDOUT
        except asyncio.CancelledError:
            if interrupted is not None:
                progress.failed(AttemptError(kind=ErrorKind.NETWORK, message=INTERRUPTED))
                interrupted(call, _result(call_id, Outcome.NETWORK_ERROR, progress, budget,
                                          resolution, queued_ms))  # fmt: skip
            raise
        finally:
            if progress.held is not None:  # never reached a request
                self._slots.release(progress.held)
        return _result(call_id, outcome, progress, budget, resolution, queued_ms)

    def _retry_wait(
        self, failure: AttemptError, resolution: Resolution, budget: Budget, progress: Progress
    ) -> float | Outcome:
        """The seconds to wait before retrying after ``failure``, or the call's outcome
        when no retry follows (none left, or none that fits the budget)."""
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
        return wait.seconds

    def _capping_now(self, resolution: Resolution) -> Grant | Wait | AttemptError | None:
        """The capping decision of a store that decides in process, without awaiting;
        ``None`` when it must be awaited (a remote store, or a paused endpoint)."""
        if self._acquire_now is None:
            return None
        try:
            found = self._acquire_now(resolution.capping, self._now_ms())
        except StorageError as exc:
            return _undecided(exc)
        return None if isinstance(found, Wait) and found.paused else found

    async def _capping_slot(
        self, resolution: Resolution, progress: Progress
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
            return _undecided(exc)

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000)

    async def _redirected(
        self, call: Call, request: Request, response: Response, progress: Progress
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
        self, request: Request, resolution: Resolution, progress: Progress
    ) -> Response | Outcome | AttemptError:
        """The slot step and one request: its response, or how it failed."""
        watch = Watch(self._slots, self._clock)
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
                found = self._capping_now(resolution)
                if found is None:
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
            except asyncio.CancelledError:
                if not watch.started:  # cut off (the budget ended) before anything left
                    progress.attempts -= 1
                    progress.retries -= retry
                    progress.waiting = True
                raise
            except EgressBlocked as exc:
                if not watch.started:  # refused before anything left: no attempt
                    progress.attempts -= 1
                    progress.retries -= retry
                progress.failed(AttemptError(kind=ErrorKind.BLOCKED, message=str(exc)))
                return Outcome.BLOCKED
            except StorageError as exc:  # its slots could not be recorded: nothing left
                progress.attempts -= 1
                progress.retries -= retry
                if progress.stored and not progress.attempts:
                    raise  # the gate puts it back
                progress.failed(_undecided(exc))
                return Outcome.CAPPED
            except TransportError as exc:
                error = AttemptError(kind=ErrorKind.NETWORK, message=str(exc))
                if isinstance(exc, UnknownHost):  # no retry can give the name an address
                    progress.failed(error)
                    return Outcome.NETWORK_ERROR
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


def _judge(response: Response, progress: Progress) -> Outcome | AttemptError:
    """The outcome of a final response, or its error when a retry may fix it."""
    if response.ok:
        progress.origin, progress.error = progress.error, None
        return Outcome.SUCCESS
    status = response.status
    error = _http_error(status)
    progress.failed(error)
    return error if is_retryable_status(status) else Outcome.HTTP_ERROR


def _with_key(headers: Mapping[str, str], call_id: str) -> Mapping[str, str]:
    """The call's headers with its ``Idempotency-Key`` (the call's own, if it sets one)."""
    if not headers:
        return {IDEMPOTENCY_HEADER: call_id}
    if any(name.lower() == "idempotency-key" for name in headers):  # theirs wins
        return headers
    return {**headers, IDEMPOTENCY_HEADER: call_id}


@functools.lru_cache(maxsize=128)
def _http_error(status: int) -> AttemptError:
    """The error of an attempt answered ``status``: a value, so one per status serves
    every attempt (a failing endpoint fails the same way many times a second)."""
    return AttemptError(kind=ErrorKind.HTTP, message=f"HTTP {status}", status=status)


def _undecided(exc: StorageError) -> AttemptError:
    return AttemptError(kind=ErrorKind.CAPPED, message=f"no capping decision: {exc}")


def _timeout(message: str) -> AttemptError:
    return AttemptError(kind=ErrorKind.TIMEOUT, message=message)


def _result(
    call_id: str,
    outcome: Outcome,
    progress: Progress,
    budget: Budget,
    resolution: Resolution,
    queued_ms: float,
) -> CallResult:
    return _make_result(
        call_id, outcome, progress.attempts, progress.retries, progress.slots, queued_ms,
        budget.elapsed_ms(), resolution.endpoint, progress.error, progress.origin,
        progress.response,
    )  # fmt: skip
