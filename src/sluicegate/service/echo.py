"""Placeholder: the built-in external system of ``serve --dev`` (issue 10)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


@asynccontextmanager
async def echo_system(host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve the echo system on ``host`` (a free port); yield its base URL."""
    yield f"http://{host}:0"
