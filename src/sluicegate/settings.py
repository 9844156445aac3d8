"""Operator settings: checked once, at construction, then read everywhere as values."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

from sluicegate.errors import InvalidInput
from sluicegate.retry import MAX_RETRIES, RETRY_SCHEDULE
from sluicegate.sealing import check_keys

HOUR = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class DefaultCap:
    """The cap applied per org + sandbox + host when no capping config matches."""

    count: int
    period_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What the operator decides; the defaults follow the spec.

    ``datasource_allowlist`` names hosts whose data sources a capping config may raise
    above the 15/s default; ``public_hosts`` names hosts declared public, which can never
    be allowlisted. ``allow_loopback`` is the local development mode of the egress policy.
    ``send_guard_ms`` is the guard band: a slot is held that much longer than its rule's
    period after its request left, so that requests whose trip to the external system
    takes up to that much longer than others' still never arrive more than the rule
    allows in any window (see ``docs/engine.md``). ``transport`` chooses the HTTP client
    of the default transport: ``"aiohttp"``, or ``"reqwest"`` (pyreqwest), faster but
    with the gaps "Transports" in ``docs/engine.md`` lists. The service reads request
    bodies of at most ``max_request_bytes``, and ``max_batch_bytes`` for a batch of calls,
    and ``max_bodies_bytes`` of bodies of all requests at once; and ``max_header_bytes``
    of headers per request. An org may have at most
    ``max_in_flight_per_org`` calls in flight in a process and ``max_queued_per_org``
    waiting in queues; over them its new calls are refused (:mod:`sluicegate.quotas`).
    ``data_keys`` (AES keys of 16, 24 or 32 bytes; the first seals, all open) seal queued
    calls' URLs, headers and bodies at rest (:mod:`sluicegate.sealing`); never shown.
    ``callback_secret``, when set, signs the service's callbacks (HMAC-SHA256, in the
    Standard Webhooks style); never shown.
    """

    action_default: DefaultCap = DefaultCap(count=300_000, period_ms=60_000)
    datasource_default: DefaultCap = DefaultCap(count=15, period_ms=1_000)
    datasource_allowlist: frozenset[str] = frozenset()
    public_hosts: frozenset[str] = frozenset()
    allow_loopback: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    allowed_ports: frozenset[int] = frozenset({80, 443})
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_response_bytes: int = 1 << 20
    queue_max_age: float = 6 * HOUR
    retry_schedule: tuple[float, ...] = RETRY_SCHEDULE
    max_redirects: int = 5
    send_guard_ms: int = 10
    transport: Literal["aiohttp", "reqwest"] = "aiohttp"
    max_request_bytes: int = 1 << 20
    max_batch_bytes: int = 16 << 20
    max_bodies_bytes: int = 256 << 20
    max_header_bytes: int = 64 << 10
    max_in_flight_per_org: int = 10_000
    max_queued_per_org: int = 10_000_000
    data_keys: tuple[bytes, ...] = field(default=(), repr=False)
    callback_secret: bytes | None = field(default=None, repr=False)
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = {h.lower() for h in self.datasource_allowlist} & {
            h.lower() for h in self.public_hosts
        }
        if clash:
            raise InvalidInput(
                "INVALID_SETTINGS",
                f"hosts declared public cannot be allowlisted: {', '.join(sorted(clash))}",
            )
        for cap in (self.action_default, self.datasource_default):
            if cap.count < 1 or cap.period_ms < 1:
                raise InvalidInput("INVALID_SETTINGS", "default caps need count and period >= 1")
        if self.max_response_bytes < 0:
            raise InvalidInput("INVALID_SETTINGS", "max_response_bytes must be >= 0")
        if min(self.max_request_bytes, self.max_batch_bytes, self.max_bodies_bytes,
               self.max_header_bytes) < 1:  # fmt: skip
            raise InvalidInput("INVALID_SETTINGS", "request body and header limits must be >= 1")
        if self.max_in_flight_per_org < 1 or self.max_queued_per_org < 0:
            raise InvalidInput("INVALID_SETTINGS", "max_in_flight_per_org must be >= 1 and "
                               "max_queued_per_org >= 0")  # fmt: skip
        if self.send_guard_ms < 0 or self.max_redirects < 0:
            raise InvalidInput("INVALID_SETTINGS", "send_guard_ms and max_redirects must be >= 0")
        if len(self.retry_schedule) > MAX_RETRIES or not all(
            0 <= delay <= 60 for delay in self.retry_schedule
        ):
            raise InvalidInput("INVALID_SETTINGS", f"retry_schedule: at most {MAX_RETRIES} "
                               "delays, each 0-60 seconds")  # fmt: skip
        if not 0 < self.queue_max_age <= 6 * HOUR:
            raise InvalidInput("INVALID_SETTINGS", "queue_max_age must be over 0 and at most 6 h")
        check_keys(self.data_keys)
        if self.transport not in ("aiohttp", "reqwest"):
            raise InvalidInput("INVALID_SETTINGS", "transport must be 'aiohttp' or 'reqwest'")
