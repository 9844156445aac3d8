"""The seam to the network: one request in, one response out, and word of when it left.

A :class:`Transport` sends exactly one HTTP request per :meth:`~Transport.send`: it follows
no redirect (a 3xx is returned as a response; the executor decides) and never re-sends on
its own, because every request that leaves must hold a slot of the rules that apply. It
checks the URL and every address it connects to with the egress policy, reads at most its
body cap, and raises :class:`~sluicegate.errors.TransportError` for a failure without an
HTTP status, or :class:`~sluicegate.errors.EgressBlocked` for a refusal.

It tells the engine when the request leaves through :class:`Sending`: ``start()`` once the
connection is ready and before the first byte is written, ``done()`` once the last byte was
handed to the network. A slot counts from ``done()``; when ``start()`` never came, nothing
left and the slot is given back.
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
    """The response to one request. ``truncated`` is set when the body was cut at the cap."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Sending(Protocol):
    """What a transport reports of a request leaving. Each is called at most once."""

    async def start(self) -> None:
        """The connection is ready and nothing is written yet. If this raises, the
        transport must write nothing and let the exception through."""
        ...

    def done(self) -> None:
        """The request was handed to the network (also when writing it failed halfway)."""
        ...


class Unwatched:
    """A :class:`Sending` for requests that hold no slot (callbacks, probes)."""

    async def start(self) -> None:
        return None

    def done(self) -> None:
        return None


class Transport(Protocol):
    """Sends HTTP requests. Implementations must be safe to share between tasks."""

    async def send(self, request: Request, sending: Sending) -> Response:
        """Send one request; raise ``TransportError`` when there is no HTTP status."""
        ...

    async def aclose(self) -> None:
        """Release connections. The transport is not used afterwards."""
        ...
