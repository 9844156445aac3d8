"""The exceptions sluicegate raises, all under one base.

Outcomes of calls (capped, timed out, ...) are values, never exceptions: see
:mod:`sluicegate.outcomes`. Exceptions are for input that cannot be accepted and for
failures of the machinery itself::

    SluicegateError
    ├── InvalidInput          bad input from a caller: carries a code and a message
    │   ├── InvalidCall       a call that cannot be made (unknown service, bad URL, ...)
    │   └── InvalidConfig     a rule payload that does not validate
    ├── ConfigError           a lifecycle rule refused (delete while deployed, ...)
    │   └── ConfigNotFound    no config with that uid in this org and sandbox
    ├── TooManyCalls          an org is over its quota of calls in flight or queued: later
    ├── TransportError        a request failed without an HTTP status (connect, reset, TLS, DNS)
    │   ├── UnknownHost       the host name has no address: not retried
    │   └── EgressBlocked     the egress policy refused the URL or the address it resolves to
    └── StorageError          a backend failed

Which HTTP status each becomes is the service's business (``service/problems.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Any


class AdobeCode(IntEnum):
    """Adobe's numeric error codes of the configuration API that sluicegate uses."""

    DELETE_DEPLOYED_CAPPING = 1451
    DELETE_DEPLOYED_THROTTLING = 1456
    NON_PROD_SANDBOX = 1463
    CREATE_LIMIT = 1465
    NOT_FOUND = 14467


class SluicegateError(Exception):
    """Base of every exception raised by sluicegate."""


class InvalidInput(SluicegateError):
    """Input that cannot be accepted. ``code`` is stable and machine-readable."""

    def __init__(self, code: str, message: str, *, details: Sequence[Any] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = tuple(details)


class InvalidCall(InvalidInput):
    """A call that cannot be made as given (unknown service, malformed URL, bad timeout...)."""


class InvalidConfig(InvalidInput):
    """A capping or throttling payload that does not validate; ``details`` holds the errors."""


class ConfigError(SluicegateError):
    """A lifecycle operation refused, with Adobe's code for it."""

    def __init__(self, code: AdobeCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


class ConfigNotFound(ConfigError):
    """No config with that uid is visible to this org and sandbox."""

    def __init__(self, kind: str, uid: str) -> None:
        super().__init__(AdobeCode.NOT_FOUND, f"{kind} config {uid!r} not found")
        self.kind = kind
        self.uid = uid


class TooManyCalls(SluicegateError):
    """The call's org has its quota of calls in flight, or of calls waiting in queues
    (``Settings.max_in_flight_per_org``, ``max_queued_per_org``): the call was not made;
    the same call may be accepted later. ``code`` says which quota."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TransportError(SluicegateError):
    """A request failed without an HTTP status: connect, reset, TLS or DNS failure."""


class UnknownHost(TransportError):
    """The request's host name does not resolve to any address (it does not exist, or has
    no address record): the call ends ``network_error`` after this attempt, with no retry,
    since a retry would only ask the resolver again."""


class EgressBlocked(TransportError):
    """The egress policy refused the URL, a redirect hop, or the address a host resolves to."""


class StorageError(SluicegateError):
    """A storage backend failed to read or write."""
