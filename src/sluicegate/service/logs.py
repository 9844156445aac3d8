"""The service's logs: one format for every logger, an access line per request, an audit
line per config change.

:func:`configure` puts one handler (stderr) on the root logger, in ``text`` or ``json``
lines, and has uvicorn's loggers propagate to it, so the service's own lines (callbacks,
background writers), uvicorn's and the access and audit lines read alike (uvicorn's own
access log stays off: the one here replaces it). A JSON line is
one object: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
the line's fields, and ``exception`` (the traceback) when there is one.

:class:`AccessLog` wraps the whole application. Every HTTP request gets a request id (the
client's ``X-Request-Id`` when it is 1-128 printable ASCII characters without spaces,
else 16 random hex digits), echoed in the ``X-Request-Id`` response header whatever the
log level. It then writes, at ``info``:

* ``sluicegate.access``, one line per request: ``request_id``, ``method``, ``route`` (the
  route's template, ``/v1/calls/{callId}``; the path, without the query string, when no
  route matched), ``org`` (the ``x-gw-ims-org-id`` header as sent: checked against the
  key only on routes that need one, and not on a 401 or 403), ``status`` (499 when the
  client left before an answer), ``duration_ms`` and ``bytes`` (of the response body);
* ``sluicegate.audit``, one line per successful (2xx) change: any POST, PUT, PATCH or
  DELETE but calls, reads made with POST (``/list/{kind}``, ``canDeploy``) and the
  development echo. Fields: ``request_id``, ``org`` (checked: the change succeeded),
  ``key`` (the key's public id, ``key_`` and 12 hex digits of its SHA-256, as listed by
  ``GET /v1/keys``), ``method``, ``route``, ``resource`` (the id in the path, else the
  ``uid``, ``keyId``, ``id`` or ``name`` of the answer, never another field) and
  ``status``. It is written whatever the level: changes are rare, and they are the record
  of who did what.

Neither logs a token, a body or a query string. With the access logger disabled (level
``warning`` or ``error``), a request costs no logging work at all.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import re
import sys
import time
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluicegate.errors import InvalidInput
from sluicegate.service.tenants import key_id

LEVELS: dict[str, int] = {"debug": logging.DEBUG, "info": logging.INFO,
                          "warning": logging.WARNING, "error": logging.ERROR}  # fmt: skip
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

access = logging.getLogger("sluicegate.access")
audit = logging.getLogger("sluicegate.audit")

#: Attributes every record has (and uvicorn's coloured copy of its message): whatever else
#: a record holds came as ``extra`` fields.
_STANDARD = {*logging.makeLogRecord({}).__dict__, "message", "asctime", "taskName",
             "color_message"}  # fmt: skip
_SANE_ID = re.compile(rb"[!-~]{1,128}")
_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOT_CHANGES = ("/v1/calls", "/dev/", "/journey/orchestration/list/")  # paths and routes
_ID_FIELDS = ("uid", "keyId", "id", "name")
_MAX_FIELD = 256  # characters kept of what a client sent (a path, an org)
_MAX_CAPTURE = 64 * 1024  # bytes of an answer read for the id of what it created


def configure(*, format: str, level: str, stream: TextIO | None = None) -> None:
    """Log every logger's lines at ``level`` and above to ``stream`` (stderr) as ``format``
    (``"text"`` or ``"json"``), and the audit lines always. Calling it again replaces
    what it set before; other handlers (a test's) are left alone."""
    if format not in ("text", "json"):
        raise InvalidInput("INVALID_SETTINGS", f"log format: 'text' or 'json', not {format!r}")
    if level not in LEVELS:
        choices = ", ".join(LEVELS)
        raise InvalidInput("INVALID_SETTINGS", f"log level: one of {choices}, not {level!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.flush()
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonLines() if format == "json" else TextLines())
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    for name in UVICORN:  # uvicorn gives them handlers of their own, and no propagation
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = name != "uvicorn.access"  # without a handler, uvicorn skips it
        logger.setLevel(logging.NOTSET)
    access.setLevel(logging.NOTSET)
    audit.setLevel(logging.INFO)


class _Handler(logging.StreamHandler[TextIO]):
    """The handler :func:`configure` installs: lines logged on an event loop's thread below
    ``warning`` are written together once the loop's current turn is over, one write for
    every request answered in that turn rather than one each (stderr writes each line at
    once: a system call per line, most of a line's cost). A warning or an error, and any
    line logged off the loop, is written at once, with whatever waited before it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str] = []
        self._flushing: asyncio.AbstractEventLoop | None = None  # the loop that will flush

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record))
            if record.levelno < logging.WARNING:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass
                else:
                    if self._flushing is not loop:  # (a loop closed before it flushed: anew)
                        self._flushing = loop
                        loop.call_soon(self.flush)
                    return
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            self._flushing = None
            if self._lines:
                text, self._lines = "\n".join(self._lines) + "\n", []
                self.stream.write(text)
            super().flush()


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname.lower(),
                                "logger": record.name, "message": record.getMessage()}  # fmt: skip
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)  # ASCII: whatever the encoding of the stream


class TextLines(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message> key=value ...``, a traceback below. A message
    with a line break or another control character (a path a client sent, say) is
    escaped, so that no one can write a line of their own into the log."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not message.isprintable():
            message = json.dumps(message, ensure_ascii=False)[1:-1]
        text = f"{_iso(record.created)} {record.levelname} {record.name}: {message}"
        for key, value in _fields(record).items():
            shown = str(value)
            if not shown or not shown.isprintable() or " " in shown or '"' in shown:
                shown = json.dumps(shown, ensure_ascii=False)
            text += f" {key}={shown}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _iso(created: float) -> str:
    whole = int(created)
    return f"{_second(whole)}.{int((created - whole) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    """The second ``whole`` in ISO 8601: formatted once for all the lines of that second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


class AccessLog:
    """ASGI: a request id for every request, an access line and, for a change, an audit
    line once it is answered (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = org = authorization = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
            elif name == b"x-gw-ims-org-id":
                org = value
            elif name == b"authorization":
                authorization = value
        request_id = (given.decode() if given is not None and _SANE_ID.fullmatch(given)
                      else f"{random.getrandbits(64):016x}")  # fmt: skip
        echoed = (b"x-request-id", request_id.encode())
        # Calls (the hot path) are never changes: they need no route to be told apart.
        may_change = scope["method"] in _CHANGES and not scope["path"].startswith(_NOT_CHANGES)
        status, size, captured = 499, 0, bytearray()
        capturing = False

        async def sending(message: Message) -> None:
            nonlocal status, size, capturing
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
                # A change whose resource is named by its answer, not its path: keep the answer.
                capturing = (may_change and 200 <= status < 300
                             and not scope.get("path_params") and _changes(_route(scope))
                             and audit.isEnabledFor(logging.INFO))  # fmt: skip
            elif capturing:
                body = message.get("body", b"")
                size += len(body)
                captured.extend(body[: _MAX_CAPTURE - len(captured)])
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            if status == 499:  # nothing answered: the server answers 500 (or the client left)
                status = 500
            raise
        finally:
            logging_access = access.isEnabledFor(logging.INFO)
            if logging_access or (may_change and 200 <= status < 300):
                method, route, claimed = scope["method"], _route(scope), _text(org)
                if logging_access:
                    elapsed = round((time.perf_counter() - started) * 1000, 3)
                    _write(access, "%s %s %d", (method, route, status), {
                        "request_id": request_id, "method": method, "route": route,
                        "org": claimed, "status": status, "duration_ms": elapsed, "bytes": size,
                    })  # fmt: skip
                if may_change and 200 <= status < 300 and _changes(route):
                    resource = _resource(scope, bytes(captured))
                    key = _key(authorization)
                    _write(audit, "%s %s %s by %s of org %s: %d",
                           (method, route, resource or "-", key, claimed, status), {
                        "request_id": request_id, "org": claimed, "key": key, "method": method,
                        "route": route, "resource": resource, "status": status,
                    })  # fmt: skip


def _write(logger: logging.Logger, message: str, args: tuple[object, ...],
           fields: dict[str, Any]) -> None:  # fmt: skip
    """``logger.info(message, *args, extra=fields)``, without the walk up the stack for
    the caller's file and line (a third of the cost of a line; neither format shows it)."""
    if logger.isEnabledFor(logging.INFO):
        logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0, message, args, None,
                                        extra=fields))  # fmt: skip


def _route(scope: Scope) -> str:
    """The template of the route that answered (the framework's, or the one the fast path
    names), else the path (bounded)."""
    template = getattr(scope.get("route"), "path", None) or scope.get("path_template")
    if isinstance(template, str):
        return template
    path: str = scope["path"]
    return path[:_MAX_FIELD]


def _changes(route: str) -> bool:
    """Whether a POST, PUT, PATCH or DELETE of ``route`` is one the audit log records."""
    return not (route.startswith(_NOT_CHANGES) or route.endswith("/canDeploy"))


def _text(value: bytes | None) -> str | None:
    return None if value is None else value[:_MAX_FIELD].decode("latin-1")


def _key(authorization: bytes | None) -> str | None:
    """The public id of the bearer token, never the token."""
    if authorization is None:
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    return key_id(token) if scheme.lower() == "bearer" and token else None


def _resource(scope: Scope, answer: bytes) -> str | None:
    """What a change changed: the last id in its path, else the one its answer names."""
    params: dict[str, Any] = scope.get("path_params") or {}
    return str(list(params.values())[-1])[:_MAX_FIELD] if params else _created(answer)


def _created(answer: bytes) -> str | None:
    """The id of what a change created, read from its JSON answer (only id fields)."""
    try:
        found = json.loads(answer)
    except ValueError:
        return None
    if isinstance(found, dict):
        for name in _ID_FIELDS:
            if isinstance(value := found.get(name), str):
                return value[:_MAX_FIELD]
    return None
