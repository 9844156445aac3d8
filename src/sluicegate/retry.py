"""Which failed attempts are retried, and after how long.

At most :data:`MAX_RETRIES` retries follow the first attempt, all inside the budget. A
network error or a status outside 2xx is retried, except 401, 403 and 404, which no retry
can fix, and 3xx, a redirect the engine could not follow further (a retry would only
follow it again): those end the call at once. So does a host name that does not exist or
has no address (:class:`~sluicegate.errors.UnknownHost`): the resolver's answer is final,
and a retry would only ask it again (a temporary resolver failure is retried). The wait is
a short fixed schedule (:data:`RETRY_SCHEDULE`, the default of the operator setting)
unless the response names its own with ``Retry-After``.
"""

from __future__ import annotations

import email.utils
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

MAX_RETRIES = 3
RETRY_SCHEDULE = (0.1, 0.2, 0.4)
FINAL_STATUSES = frozenset({401, 403, 404})
#: ``getaddrinfo``'s answers that a name has no address: it does not exist (NXDOMAIN),
#: it has no address record, or none of the family asked for. Not EAI_AGAIN (the resolver
#: did not answer in time, or its server failed) nor EAI_FAIL: those may pass.
NO_ADDRESS_ERRORS = frozenset(
    code for name in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY")
    if (code := getattr(socket, name, None)) is not None
)  # fmt: skip


def is_unknown_host(exc: OSError) -> bool:
    """Whether a failed name lookup said the name has no address (rather than failing)."""
    return isinstance(exc, socket.gaierror) and exc.errno in NO_ADDRESS_ERRORS


def is_retryable_status(status: int) -> bool:
    """A status a retry may fix: neither 2xx, 3xx, 401, 403 nor 404."""
    return not 200 <= status < 400 and status not in FINAL_STATUSES


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP-date), if any."""
    # Names compare without case; most are not 11 characters long, which is cheap to see.
    value = next((v for k, v in headers.items() if len(k) == 11 and k.lower() == "retry-after"),
                 None)  # fmt: skip
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """The retry schedule; ``schedule[i]`` is the wait before retry ``i + 1``."""

    schedule: tuple[float, ...]
    max_retries: int = MAX_RETRIES

    def wait(self, retries_made: int, headers: Mapping[str, str] | None, now: float) -> Wait:
        """How long to wait before the next retry, and whether the server asked for it."""
        asked = retry_after(headers, now) if headers else None
        if asked is not None:
            return Wait(seconds=asked, asked_by_server=True)
        index = min(retries_made, len(self.schedule) - 1)
        return Wait(seconds=self.schedule[index] if self.schedule else 0.0, asked_by_server=False)


class Wait(NamedTuple):
    """A wait before a retry. A server-asked wait that does not fit the budget ends the
    call with its last error; a schedule wait that does not fit ends it ``timedout``.
    (A named tuple: one is made for every retry.)"""

    seconds: float
    asked_by_server: bool
