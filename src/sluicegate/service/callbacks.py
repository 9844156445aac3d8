"""Callbacks: the result of a finished call, POSTed to the ``callbackUrl`` given with it.

A callback URL is user-supplied, exactly like a call's URL, so it goes through the same
egress policy (the gate's settings): checked before the request and on every address it
resolves to. A refusal is logged and counted, never retried and never raised.

Delivery is at least once: each callback gets :data:`ATTEMPTS` attempts of at most
:data:`ATTEMPT_TIMEOUT` seconds, :data:`RETRY_DELAYS` apart, in the background; any 2xx
ends it. Waits go through the clock, like every wait in sluicegate. Redirects are not
followed (a 3xx is a failure): a POST has no portable meaning after a redirect.

With ``Settings.callback_secret`` set, every attempt is signed as Standard Webhooks
(https://www.standardwebhooks.com) describe: ``webhook-id`` is the call id (the same on
every attempt and after a restart, so a receiver de-duplicates on it), ``webhook-timestamp``
the attempt's time in whole seconds since the epoch (read from the clock), and
``webhook-signature`` ``v1,`` and the base64 HMAC-SHA256, keyed with the secret's bytes, of
``{webhook-id}.{webhook-timestamp}.{body}``. Each attempt is signed anew, so a retry half a
minute later is as fresh as the first. Without a secret nothing is signed.

Callbacks are counted per org and sandbox (``delivered``, ``failed``, ``refused``, and
``pending`` while one is being sent), for the org's ``/metrics``; since the process
started, as Prometheus counters are.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

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


@dataclass(slots=True)
class CallbackTally:
    """Callbacks of one org's sandbox since the process started; ``pending``: being sent."""

    delivered: int = 0
    failed: int = 0
    refused: int = 0
    pending: int = 0


def signature(secret: bytes, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` of ``body`` sent as message ``msg_id`` at ``timestamp``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(secret, signed, hashlib.sha256)).decode()


def signed_headers(secret: bytes, *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


class Callbacks:
    """Sends callbacks in background tasks; ``settled(call_id)`` runs when one is over
    (delivered, refused or given up), so the caller can stop owing it."""

    def __init__(self, clock: Clock, settings: Settings, settled: Callable[[str], None]) -> None:
        self._clock = clock
        self._settled = settled
        self._secret = settings.callback_secret
        # No response body is kept (max_body 0): only the status matters.
        self._transport = AiohttpTransport(policy=EgressPolicy(settings), max_body=0)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self.counts = {"delivered": 0, "failed": 0, "refused": 0}  # of the whole process
        self._tallies: dict[tuple[str, str], CallbackTally] = {}

    def send(
        self, call_id: str, url: str, body: str, *, org: str | None = None, sandbox: str = ""
    ) -> None:
        """POST ``body`` (the call's result view, JSON) to ``url`` in the background,
        counted for ``org``'s ``sandbox`` (when ``org`` is given)."""
        tally = None
        if org is not None:
            tally = self._tallies.setdefault((org, sandbox), CallbackTally())
            tally.pending += 1
        task = asyncio.create_task(self._deliver(call_id, url, body.encode(), tally),
                                   name=f"callback {call_id}")  # fmt: skip
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def tallies(self, org: str) -> dict[str, CallbackTally]:
        """``org``'s callbacks by sandbox (copies)."""
        return {sandbox: replace(tally) for (of, sandbox), tally in self._tallies.items()
                if of == org}  # fmt: skip

    async def _deliver(
        self, call_id: str, url: str, body: bytes, tally: CallbackTally | None
    ) -> None:
        try:
            how = await self._attempts(call_id, url, body)
        finally:
            if tally is not None:
                tally.pending -= 1
        self.counts[how] += 1
        if tally is not None:
            setattr(tally, how, getattr(tally, how) + 1)
        self._settled(call_id)

    def _request(self, call_id: str, url: str, body: bytes) -> Request:
        headers = {"Content-Type": "application/json", CALL_ID_HEADER: call_id}
        if self._secret is not None:
            headers |= signed_headers(self._secret, msg_id=call_id,
                                      timestamp=int(self._clock.now()), body=body)  # fmt: skip
        return Request(method="POST", url=url, headers=headers, body=body)

    async def _attempts(self, call_id: str, url: str, body: bytes) -> str:
        """``delivered``, ``refused`` or ``failed``: how the callback ended."""
        shown = _logged(url)
        for attempt in range(ATTEMPTS):
            try:
                async with self._slots:
                    request = self._request(call_id, url, body)  # signed as it leaves
                    async with self._clock.deadline(self._clock.now() + ATTEMPT_TIMEOUT):
                        response = await self._transport.send(request, Unwatched())
            except EgressBlocked as exc:
                log.warning("callback of call %s to %s refused: %s", call_id, shown, exc)
                return "refused"
            except TimeoutError:
                reason = f"no answer within {ATTEMPT_TIMEOUT:g} s"
            except TransportError as exc:
                reason = str(exc)
            except Exception as exc:  # a transport bug fails this attempt, never the service
                reason = f"unexpected {type(exc).__name__}: {exc}"
            else:
                if response.ok:
                    return "delivered"
                reason = f"HTTP {response.status}"
            if attempt + 1 == ATTEMPTS:
                log.warning("callback of call %s to %s failed %d times, the last: %s",
                            call_id, shown, ATTEMPTS, reason)  # fmt: skip
                return "failed"
            await self._clock.sleep(RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)])
        return "failed"  # unreachable: the last attempt always returns above

    async def aclose(self) -> None:
        """Stop sending; callbacks not settled stay owed and are sent after the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._transport.aclose()


def _logged(url: str) -> str:
    """``url`` as a log line may show it: without a password or a query (webhook URLs
    often carry a token there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", ""))
