"""Placeholder: the service's logs (JSON or text), the access log and the audit log."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class AccessLog:
    """ASGI: one access-log line per request (to be written)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
