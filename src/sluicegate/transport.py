"""The seam to the network: one request in, one response out.

A :class:`Transport` makes exactly one HTTP attempt. It follows redirects itself (each hop
re-checked by the egress policy), reads at most ``max_body`` bytes of the body, and raises
:class:`~sluicegate.errors.TransportError` for a failure without an HTTP status, or
:class:`~sluicegate.errors.EgressBlocked` when a hop or a resolved address is refused.
Retries, timeouts and slots are the executor's business, not the transport's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One HTTP request as the external system will receive it."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """The response to one attempt. ``truncated`` is set when the body was cut at the cap."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Transport(Protocol):
    """Makes HTTP attempts. Implementations must be safe to share between tasks."""

    async def send(self, request: Request) -> Response:
        """Make one attempt; raise ``TransportError`` when there is no HTTP status."""
        ...

    async def aclose(self) -> None:
        """Release connections. The transport is not used afterwards."""
        ...
