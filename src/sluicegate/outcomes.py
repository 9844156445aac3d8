"""How a call ended: exactly one :class:`Outcome` per call, inside a :class:`CallResult`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sluicegate.transport import Response


class Outcome(StrEnum):
    """How a call ended. The values are the report's vocabulary."""

    SUCCESS = "success"
    """An attempt returned 2xx."""
    CAPPED = "capped"
    """No capping slot for the first attempt, a retry or a redirect hop; it was not sent."""
    EXPIRED = "expired"
    """Six hours in the throttling queue without a slot."""
    TIMEDOUT = "timedout"
    """The budget ended during an attempt or a wait."""
    HTTP_ERROR = "http_error"
    """The last attempt returned a status outside 2xx."""
    NETWORK_ERROR = "network_error"
    """The last attempt failed without an HTTP status."""
    BLOCKED = "blocked"
    """The egress policy refused the URL, a redirect hop, or the address a host resolves
    to; that request was not sent (a refused first request: no attempt at all)."""


#: The error of a call cut off while running (its caller cancelled, or the engine stopped).
INTERRUPTED = (
    "sluicegate stopped while the call was running; whether the external system "
    "received it is unknown"
)


class ErrorKind(StrEnum):
    """What went wrong with one attempt (Adobe's ``actionExecutionError`` vocabulary)."""

    HTTP = "http"
    NETWORK = "error"
    TIMEOUT = "timedout"
    CAPPED = "capped"
    EXPIRED = "expired"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptError:
    """The error of one attempt: its kind, the HTTP status if any, and a readable message."""

    kind: ErrorKind
    message: str
    status: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallResult:
    """Everything known about a finished call.

    ``attempts`` counts the requests tried: the first attempt, each retry (at most 3) and
    each redirect hop, one whose connection failed included; a request the egress policy
    refused before it could leave is none. ``retries`` counts the retries made. ``slots``
    counts the rate-rule slots its requests held (one per rule kind, throttling and
    capping, per request that left).
    ``error`` is the last request's error and ``origin_error`` the one before it (Adobe's
    "origin" error), so a call that failed with 500 and then ran out of time reads
    ``timedout`` with origin ``http 500``. Times are milliseconds: ``queued_ms`` in the
    throttling queue, ``execution_ms`` from the slot grant to the end.
    """

    call_id: str
    outcome: Outcome
    attempts: int
    retries: int
    slots: int
    queued_ms: float
    execution_ms: float
    endpoint: str
    error: AttemptError | None = None
    origin_error: AttemptError | None = None
    response: Response | None = None

    @property
    def jo_status_code(self) -> str | None:
        """Adobe's ``jo_status_code``: ``http_<status>``, ``capped``, ``timedout`` or
        ``internalError``; ``None`` on success."""
        match self.outcome:
            case Outcome.SUCCESS:
                return None
            case Outcome.CAPPED | Outcome.TIMEDOUT:
                return self.outcome.value
            case Outcome.HTTP_ERROR:
                status = self.response.status if self.response is not None else 0
                return f"http_{status}"
            case _:
                return "internalError"
