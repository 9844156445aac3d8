"""Callbacks: the result of a finished call, POSTed to the ``callbackUrl`` given with it.

A callback URL is user-supplied, exactly like a call's URL, so it goes through the same
egress policy (the gate's settings): checked before the request and on every address it
resolves to. A refusal is logged and counted, never retried and never raised.

Delivery is at least once: each callback gets :data:`ATTEMPTS` attempts of at most
:data:`ATTEMPT_TIMEOUT` seconds, :data:`RETRY_DELAYS` apart, in the background; any 2xx
ends it. Waits go through the clock, like every wait in sluicegate. Redirects are not
followed (a 3xx is a failure): a POST has no portable meaning after a redirect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sluicegate.clock import Clock
from sluicegate.egress import EgressPolicy
from sluicegate.errors import EgressBlocked, TransportError
from sluicegate.settings import Settings
from sluicegate.transport import Request, Unwatched
from sluicegate.transports.aiohttp import AiohttpTransport

ATTEMPTS = 4
ATTEMPT_TIMEOUT = 10.0
RETRY_DELAYS = (1.0, 5.0, 30.0)
#: Attempts in flight at once, so a burst of finished calls does not open a socket each.
CONCURRENCY = 64
CALL_ID_HEADER = "X-Sluicegate-Call-Id"

log = logging.getLogger(__name__)


class Callbacks:
    """Sends callbacks in background tasks; ``settled(call_id)`` runs when one is over
    (delivered, refused or given up), so the caller can stop owing it."""

    def __init__(self, clock: Clock, settings: Settings, settled: Callable[[str], None]) -> None:
        self._clock = clock
        self._settled = settled
        # No response body is kept (max_body 0): only the status matters.
        self._transport = AiohttpTransport(policy=EgressPolicy(settings), max_body=0)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"delivered": 0, "failed": 0, "refused": 0}

    def send(self, call_id: str, url: str, body: str) -> None:
        """POST ``body`` (the call's result view, JSON) to ``url`` in the background."""
        task = asyncio.create_task(self._deliver(call_id, url, body.encode()),
                                   name=f"callback {call_id}")  # fmt: skip
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, call_id: str, url: str, body: bytes) -> None:
        request = Request(
            method="POST",
            url=url,
            headers={"Content-Type": "application/json", CALL_ID_HEADER: call_id},
            body=body,
        )
        for attempt in range(ATTEMPTS):
            try:
                async with self._slots, self._clock.deadline(self._clock.now() + ATTEMPT_TIMEOUT):
                    response = await self._transport.send(request, Unwatched())
            except EgressBlocked as exc:
                log.warning("callback of call %s to %s refused: %s", call_id, url, exc)
                return self._end(call_id, "refused")
            except TimeoutError:
                reason = f"no answer within {ATTEMPT_TIMEOUT:g} s"
            except TransportError as exc:
                reason = str(exc)
            except Exception as exc:  # a transport bug fails this attempt, never the service
                reason = f"unexpected {type(exc).__name__}: {exc}"
            else:
                if response.ok:
                    return self._end(call_id, "delivered")
                reason = f"HTTP {response.status}"
            if attempt + 1 == ATTEMPTS:
                log.warning("callback of call %s to %s failed %d times, the last: %s",
                            call_id, url, ATTEMPTS, reason)  # fmt: skip
                return self._end(call_id, "failed")
            await self._clock.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        return None  # unreachable: the last attempt always returns above

    def _end(self, call_id: str, how: str) -> None:
        self.counts[how] += 1
        self._settled(call_id)

    async def aclose(self) -> None:
        """Stop sending; callbacks not settled stay owed and are sent after the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._transport.aclose()
