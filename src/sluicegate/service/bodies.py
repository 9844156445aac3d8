"""Request bodies as the service reads them: JSON whose every string is valid Unicode.

JSON may escape half of a surrogate pair (``"\\udfff"``), which Python's ``json`` turns
into a string that cannot be encoded: stored, logged or sent on, it raises far from the
request that brought it, and where writes are grouped (the queue journal, the call log)
it would fail other tenants' writes with it. So the service parses bodies with
pydantic-core's parser, which refuses such strings, and answers 400 before anything is
accepted. The call routes' own door (:mod:`.fastpath`) parses with the same parser; the
configuration routes, which read numbers their own way, check what they parsed with
:func:`is_text_throughout`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import pydantic_core
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from sluicegate.call import is_text


class _Request(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError as exc:  # the framework answers it as invalid JSON (400)
                raise json.JSONDecodeError(str(exc), body.decode("utf-8", "replace"), 0) from None
        return self._json


class JsonRoute(APIRoute):
    """A route whose request body is read by :class:`_Request`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_Request(request.scope, request.receive))

        return strict


def is_text_throughout(doc: Any) -> bool:
    """Whether every string of the parsed JSON ``doc`` (keys too) is valid Unicode."""
    if isinstance(doc, str):
        return is_text(doc)
    if isinstance(doc, dict):
        return all(is_text(key) and is_text_throughout(value) for key, value in doc.items())
    if isinstance(doc, list):
        return all(is_text_throughout(item) for item in doc)
    return True
