"""What a journey asks for: one :class:`Call` to an external system, checked at the door."""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, NotRequired, TypedDict, Unpack
from urllib.parse import urlsplit

from sluicegate.errors import InvalidCall
from sluicegate.values import maker

#: The schemes a call may use, and the port each implies when the URL names none.
DEFAULT_PORTS = {"http": 80, "https": 443}
MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 30
DEFAULT_TIMEOUT_SECONDS = 30

#: ``OPTION`` is how Adobe's API spells it; both spellings mean the HTTP method OPTIONS.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
METHOD_ALIASES = {"OPTION": "OPTIONS"}
_NUMBERS = (int, float)  # a tuple: ``int | float`` would build a union on every call
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Service(StrEnum):
    """Which kind of journey step makes the call."""

    ACTION = "action"
    DATA_SOURCE = "dataSource"


#: ``Service(name)`` as a lookup: an enum call costs ten times more, on every call.
_SERVICES: dict[object, Service] = {service.value: service for service in Service}
#: Methods as given (any case) to their normalized form, as seen so far.
_METHOD_FORMS: dict[str, str] = {}


def normalize_method(method: str) -> str:
    """Upper-case ``method`` and map Adobe's ``OPTION`` to ``OPTIONS``; raise
    :class:`InvalidCall` for an unknown method."""
    found = _METHOD_FORMS.get(method)
    if found is None:
        upper = method.upper()
        found = METHOD_ALIASES.get(upper, upper)
        if found not in METHODS:
            raise InvalidCall("INVALID_METHOD", f"unknown HTTP method {method!r}")
        if len(_METHOD_FORMS) < 1024:  # bounded: the forms of a few names in any case
            _METHOD_FORMS[method] = found
    return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One logical request of a journey step. Build it with :meth:`build`, which validates."""

    org: str
    sandbox: str
    journey: str
    service: Service
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def target(self) -> Target:
        """The parsed URL (cached by URL)."""
        return check_url(self.url)

    @classmethod
    def build(cls, **args: Unpack[CallArgs]) -> Call:
        """Validate the parts of a call; raise :class:`InvalidCall` with a clear message."""
        org, sandbox, journey = args["org"], args["sandbox"], args["journey"]
        # The usual call passes at once; the loop below names the part that did not.
        if not (type(org) is str and org and type(sandbox) is str and sandbox
                and type(journey) is str and journey
                and is_text(org) and is_text(sandbox) and is_text(journey)):  # fmt: skip
            for name, value in (("org", org), ("sandbox", sandbox), ("journey", journey)):
                if not isinstance(value, str) or not value:
                    raise InvalidCall("INVALID_CALL", f"{name} must be a non-empty string")
                if not is_text(value):
                    raise InvalidCall("INVALID_CALL", f"{name} is not valid Unicode")
        service = args["service"]
        kind = _SERVICES.get(service) if isinstance(service, str) else None
        if kind is None:
            raise InvalidCall(
                "INVALID_SERVICE", f"service must be 'action' or 'dataSource', not {service!r}"
            )
        url = args["url"]
        check_url(url)
        timeout_seconds = args.get("timeout_seconds")
        timeout = DEFAULT_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, _NUMBERS)
            or not MIN_TIMEOUT_SECONDS <= timeout <= MAX_TIMEOUT_SECONDS
        ):
            raise InvalidCall(
                "INVALID_TIMEOUT",
                f"timeoutSeconds must be between {MIN_TIMEOUT_SECONDS} and "
                f"{MAX_TIMEOUT_SECONDS}, not {timeout_seconds!r}",
            )
        headers = args.get("headers")
        if headers:
            check_headers(headers)
            headers = dict(headers)
        body = args.get("body")
        try:
            payload = body.encode() if isinstance(body, str) else (body or b"")
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it
            raise InvalidCall("INVALID_BODY", "body is not valid Unicode") from None
        method = normalize_method(args["method"])
        if cls is not Call:  # a subclass: its own constructor
            return cls(org=org, sandbox=sandbox, journey=journey, service=kind, method=method,
                       url=url, headers=headers or {}, body=payload,
                       timeout_seconds=float(timeout))  # fmt: skip
        # Positional, in field order (see sluicegate.values): one Call per call made.
        return _make_call(org, sandbox, journey, kind, method, url, headers or {}, payload,
                          float(timeout))  # fmt: skip


_make_call = maker(Call)


class CallArgs(TypedDict):
    """The parts of a call, as :meth:`Gate.call <sluicegate.Gate.call>` takes them.

    ``service`` is ``action`` or ``dataSource``; ``method`` an HTTP method (Adobe's
    ``OPTION`` means ``OPTIONS``); ``url`` absolute http(s); ``body`` bytes, or a str sent
    as UTF-8; ``timeout_seconds`` the journey's budget, 1..30 (default 30).
    """

    org: str
    sandbox: str
    journey: str
    service: str
    method: str
    url: str
    headers: NotRequired[Mapping[str, str] | None]
    body: NotRequired[bytes | str | None]
    timeout_seconds: NotRequired[float | None]


def new_call_id(now: float) -> str:
    """A call id: 32 hex digits, the millisecond ``now`` then 80 random bits.

    Ids made later sort later, so a store indexes them by appending rather than by
    inserting at random places (twice the enqueue rate of random ids at a million queued
    calls); 80 random bits keep them unique. They name calls, they grant nothing: what
    reads a call checks the key's org and sandbox, so the bits come from the fast
    generator of :mod:`random`, not from the operating system.
    """
    ms = int(now * 1000) & 0xFFFF_FFFF_FFFF
    return ((ms << 80) | random.getrandbits(80)).to_bytes(16, "big").hex()


def is_text(value: str) -> bool:
    """Whether ``value`` is valid Unicode: no lone surrogate (from a JSON escape such as
    ``"\\udfff"``), which no UTF-8 can carry and every store, log or request would refuse
    later, far from the call that brought it."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def check_headers(headers: Mapping[str, str]) -> None:
    """Refuse header names that are not HTTP tokens and values with line breaks, which
    would otherwise split the request (header injection)."""
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidCall("INVALID_HEADER", f"header name {name!r} is not a valid token")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise InvalidCall("INVALID_HEADER", f"header {name!r} has an invalid value")
        if not is_text(value):
            raise InvalidCall("INVALID_HEADER", f"header {name!r} is not valid Unicode")


class Target(NamedTuple):
    """A call's URL, parsed once: what the egress policy and the rules read of it. The
    host is lower-case, the port explicit (80/443 when the URL names none), the path
    ``/`` when empty; query and fragment play no part."""

    scheme: str
    netloc: str
    host: str
    port: int
    path: str


@functools.lru_cache(maxsize=4096)
def check_url(url: str) -> Target:
    """Parse an absolute URL with a host; raise :class:`InvalidCall` otherwise. Cached:
    the door, the egress policy and the rules all read it (errors are not cached)."""
    if not isinstance(url, str) or not url:
        raise InvalidCall("INVALID_URL", "url must be a non-empty string")
    if not is_text(url):
        raise InvalidCall("INVALID_URL", "url is not valid Unicode")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidCall("INVALID_URL", f"malformed url {url!r}: {exc}") from None
    host = parts.hostname
    if not parts.scheme or not host:
        raise InvalidCall("INVALID_URL", f"url must be absolute with a host, not {url!r}")
    if port is None:
        port = DEFAULT_PORTS.get(parts.scheme, 0)
    return Target(parts.scheme, parts.netloc, host, port, parts.path or "/")
