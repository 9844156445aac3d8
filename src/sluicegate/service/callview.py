"""The result view: how a finished call reads over HTTP, in callbacks and in storage.

One JSON object per call (``docs/api-calls.md`` describes it field by field)::

    {"callId", "state": "done", "outcome", "joStatusCode", "attempts", "retries", "slots",
     "queuedMs", "executionMs", "response": {...} | null, "error", "originError"}

The response body is rendered by what it holds, and ``response.encoding`` says how:

* ``json``: the body declared a JSON content type (``application/json``, ``+json``) and
  parsed; ``body`` is the decoded value.
* ``text``: the body decoded in its declared charset (UTF-8 when none); ``body`` is a
  string. A body cut at the size cap loses at most its incomplete last character.
* ``base64``: anything else (binary, or text that does not decode); ``body`` is the
  base64 of the bytes. Replacement characters were not chosen: they lose data silently.
"""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import Mapping
from typing import Any

from sluicegate.outcomes import AttemptError, CallResult
from sluicegate.transport import Response


def view(result: CallResult) -> dict[str, Any]:
    """The view of a finished call, as a JSON-ready dict."""
    response = result.response
    return {
        "callId": result.call_id,
        "state": "done",
        "outcome": result.outcome.value,
        "joStatusCode": result.jo_status_code,
        "attempts": result.attempts,
        "retries": result.retries,
        "slots": result.slots,
        "queuedMs": round(result.queued_ms, 3),
        "executionMs": round(result.execution_ms, 3),
        "response": None if response is None else response_view(response),
        "error": error_view(result.error),
        "originError": error_view(result.origin_error),
    }


def view_json(result: CallResult) -> str:
    """:func:`view` serialized: compact, and ASCII-safe for any storage or transport."""
    return _COMPACT.encode(view(result))


def error_view(error: AttemptError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"kind": error.kind.value, "message": error.message, "status": error.status}


def response_view(response: Response) -> dict[str, Any]:
    body, encoding = render_body(response.body, response.headers, response.truncated)
    return {
        "status": response.status,
        "headers": dict(response.headers),
        "body": body,
        "encoding": encoding,
        "truncated": response.truncated,
    }


def render_body(data: bytes, headers: Mapping[str, str], truncated: bool) -> tuple[Any, str]:
    """``(body, encoding)`` for the bytes of a response; see the module docstring."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if data and not truncated and (media == "application/json" or media.endswith("+json")):
        try:
            return _STRICT.decode(data.decode(json.detect_encoding(data), "surrogatepass")), "json"
        except ValueError:  # not JSON after all (UnicodeDecodeError is a ValueError)
            pass
    charset = _charset(params)
    try:
        b"".decode(charset)  # LookupError unless a text encoding (not "zlib", "hex"...)
        decoder = codecs.getincrementaldecoder(charset)()
        return decoder.decode(data, final=not truncated), "text"
    except (LookupError, ValueError):
        return base64.b64encode(data).decode("ascii"), "base64"


def _charset(params: str) -> str:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _no_constant(name: str) -> Any:
    """Refuse ``NaN`` and ``Infinity``: Python reads them, but they are not JSON."""
    raise ValueError(f"{name} is not JSON")


# Built once: json.dumps and json.loads build a new coder for every call given options.
_COMPACT = json.JSONEncoder(separators=(",", ":"))
_STRICT = json.JSONDecoder(parse_constant=_no_constant)
