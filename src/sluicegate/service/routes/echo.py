"""``/dev/echo``: the built-in external system of ``serve --dev``, for a first run offline.

A first call needs something to call. With ``--dev`` the service itself serves one, on its
own port, so the printed first call, the README and every example in the docs work on a
machine without internet, and say ``http://localhost:8080/dev/echo`` verbatim. It is not
served without ``--dev`` (the app mounts it only then), needs no key (an external system
never sees sluicegate's keys), and is left out of the OpenAPI description.

Any method, on ``/dev/echo`` and any path below it (so that rules can tell endpoints
apart: ``/dev/echo/orders/*``), answers a JSON echo of the request: ``method``, ``path``,
``query``, ``headers`` (without ``Authorization``, ``Proxy-Authorization`` and
``Cookie``: credentials stay out of call results) and ``body`` (parsed JSON, else text,
else base64, as ``bodyEncoding`` says). Two query parameters play a struggling system:

- ``status=503``: answer that status (200 to 599), with the same echo;
- ``delay_ms=1500``: answer after that many milliseconds (0 to 30,000: no call's budget
  is longer). A client that goes away ends the wait.

Anything else in the query is only echoed. A knob out of range answers 400
``INVALID_REQUEST``, in the service's error model.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from typing import Any

from fastapi import APIRouter, Request, Response

from sluicegate.errors import InvalidInput

router = APIRouter(include_in_schema=False)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
MAX_DELAY_MS = 30_000
#: Request headers not echoed: credentials meant for the external system.
HIDDEN = frozenset({"authorization", "proxy-authorization", "cookie"})
#: Statuses that carry no body.
EMPTY = frozenset({204, 304})


@router.api_route("/dev/echo", methods=METHODS)
@router.api_route("/dev/echo/{rest:path}", methods=METHODS)
async def echo(request: Request) -> Response:
    """The request, echoed as JSON, with the status and after the delay its knobs ask."""
    status = _knob(request, "status", 200, low=200, high=599)
    delay_ms = _knob(request, "delay_ms", 0, low=0, high=MAX_DELAY_MS)
    raw = await request.body()
    seen = {
        "method": request.method,
        "path": request.url.path,
        "query": dict(request.query_params),
        "headers": {k: v for k, v in request.headers.items() if k.lower() not in HIDDEN},
        **_body(raw, request.headers.get("content-type", "")),
    }
    if delay_ms:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_ms / 1000):
                await _disconnected(request)
    if status in EMPTY:
        return Response(status_code=status)
    content = json.dumps(seen).encode()
    return Response(content, status_code=status, media_type="application/json")


def _knob(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """The integer query parameter ``name``, from ``low`` to ``high``."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not low <= int(raw) <= high:
        raise InvalidInput("INVALID_REQUEST", f"{name}: an integer from {low} to {high}")
    return int(raw)


def _body(raw: bytes, content_type: str) -> dict[str, Any]:
    """The body as the echo shows it: JSON when declared and parsed, else text, else base64."""
    if not raw:
        return {"body": None, "bodyEncoding": None}
    if "json" in content_type.lower():
        with contextlib.suppress(ValueError, RecursionError):
            return {"body": json.loads(raw, parse_constant=_not_json), "bodyEncoding": "json"}
    try:
        return {"body": raw.decode(), "bodyEncoding": "text"}
    except UnicodeDecodeError:
        return {"body": base64.b64encode(raw).decode(), "bodyEncoding": "base64"}


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


async def _disconnected(request: Request) -> None:
    """Return once the client has gone away (the body was read: nothing else can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
