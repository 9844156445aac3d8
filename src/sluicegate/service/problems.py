"""Errors become HTTP responses here, and only here.

Every error response carries ``status``, a stable ``code`` and a readable ``message``.
On the Adobe-compatible configuration API (``/journey/orchestration``) it also carries
Adobe's envelope, ``error: {code, family, message, service}``, and for an invalid config
the validation ``errors`` list of canDeploy, so existing Adobe clients read it unchanged.
Every status the service answers is decided here: by the class of the error, and for a
lifecycle refusal by its Adobe code (:data:`CONFIG_STATUS`). Where Adobe documents a 4xx
for a code, that is the status; where Adobe answers 500 for a client's mistake (deleting a
deployed config: 1451, 1456), the answer is 409 Conflict. Invalid input answers 400 (409
for a name already taken: :data:`INPUT_STATUS`), never 500.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from sluicegate.errors import (
    AdobeCode,
    ConfigError,
    InvalidConfig,
    InvalidInput,
    StorageError,
    TooManyCalls,
)

ADOBE_PREFIX = "/journey/orchestration"


class AdobeError(BaseModel):
    code: int | str
    family: str
    message: str
    service: str


class FieldProblem(BaseModel):
    field: str
    message: str | None


class ProblemOut(BaseModel):
    """Every error response of the service."""

    status: int
    code: int | str = Field(description="Stable code: INVALID_URL, ERR_ENDPOINTCONFIG_100, 1451...")
    message: str
    error: AdobeError | None = Field(None, description="Adobe's envelope (configuration API)")
    errors: list[dict[str, Any]] | None = Field(None, description="Invalid config: every error")
    details: list[FieldProblem] | None = Field(None, description="Invalid request: every field")


COMMON = {
    400: "Invalid input, header or parameter: `code` says which",
    401: "Missing or unknown API key",
    403: "The key's org is not the header's, or its role may not do this",
    404: "Unknown sandbox, or nothing of that id in this org and sandbox",
}


def responses(descriptions: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of a route: the common ones, ``descriptions``
    (added or overriding), and any other as ``default`` (which also keeps FastAPI from
    documenting a 422 that the service never sends)."""
    found: dict[int | str, dict[str, Any]] = {
        status: {"model": ProblemOut, "description": text}
        for status, text in {**COMMON, **(descriptions or {})}.items()
    }
    found["default"] = {"model": ProblemOut, "description": "Any other error"}
    return found


#: The status of each lifecycle refusal.
CONFIG_STATUS = {
    AdobeCode.DELETE_DEPLOYED_CAPPING: 409,
    AdobeCode.DELETE_DEPLOYED_THROTTLING: 409,
    AdobeCode.NON_PROD_SANDBOX: 400,
    AdobeCode.CREATE_LIMIT: 400,
    AdobeCode.NOT_FOUND: 404,
}
#: Invalid input that is not answered 400.
INPUT_STATUS = {"SANDBOX_EXISTS": 409}


class Problem(Exception):
    """An HTTP error raised by the service layer itself (auth, missing resources)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def body(
    path: str,
    status: int,
    code: str | int,
    message: str,
    *,
    family: str = "INPUT_OUTPUT_ERROR",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The error body of a request to ``path``: Adobe's envelope on the Adobe API."""
    found: dict[str, Any] = {"status": status, "code": code, "message": message}
    if path.startswith(ADOBE_PREFIX):
        found["error"] = {"code": code, "family": family, "message": message,
                          "service": "sluicegate"}  # fmt: skip
    found.update(extra or {})
    return found


def advice(status: int) -> dict[str, str]:
    """The headers an error answer carries: ``Retry-After`` (a second) where the same
    request may work later — the storage was unavailable, the service busy."""
    return {"Retry-After": "1"} if status in (429, 503) else {}


def render(content: dict[str, Any]) -> bytes:
    """An error body as bytes, written as the framework writes JSON (compact, UTF-8), for
    the answers sent outside it (the call routes' door, the limits, the server's 400)."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()  # fmt: skip


def problem(
    request: Request,
    status: int,
    code: str | int,
    message: str,
    *,
    family: str = "INPUT_OUTPUT_ERROR",
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    content = body(request.url.path, status, code, message, family=family, extra=extra)
    return JSONResponse(content, status_code=status, headers=advice(status))


def answer(exc: Exception, path: str) -> tuple[int, dict[str, Any]] | None:
    """The status and body that answer ``exc`` on ``path``; None for an unexpected error.
    Used by the framework's handlers and by the call routes (:mod:`.fastpath`) alike."""
    match exc:
        case Problem():
            return exc.status, body(path, exc.status, exc.code, exc.message)
        case InvalidConfig():
            errors = list(exc.details)  # canDeploy's [{errorCode, error}]
            return 400, body(path, 400, exc.code, exc.message, extra={"errors": errors})
        case InvalidInput():
            status = INPUT_STATUS.get(exc.code, 400)
            return status, body(path, status, exc.code, exc.message)
        case ConfigError():
            status = CONFIG_STATUS[exc.code]
            return status, body(path, status, exc.code.value, exc.message)
        case StorageError():
            found = body(path, 503, "STORAGE_UNAVAILABLE", str(exc), family="INTERNAL_ERROR")
            return 503, found
        case TooManyCalls():
            return 429, body(path, 429, exc.code, exc.message)
    return None


async def _known(request: Request, exc: Exception) -> JSONResponse:
    found = answer(exc, request.url.path)
    assert found is not None  # registered only for the classes answer() knows
    return JSONResponse(found[1], status_code=found[0], headers=advice(found[0]))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    codes = {400: "INVALID_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
    code = codes.get(exc.status_code, f"HTTP_{exc.status_code}")
    response = problem(request, exc.status_code, code, str(exc.detail))
    response.headers.update(exc.headers or {})
    allowed = _allowed(request) if exc.status_code == 405 else None
    if allowed:
        response.headers["Allow"] = allowed
    return response


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _allowed(request: Request) -> str | None:
    """The methods the OpenAPI documents on the request's path. Starlette's own ``Allow``
    names only the first route of the path, while each method is a route of its own."""
    segments = request.url.path.rstrip("/").split("/")
    for template, item in request.app.openapi()["paths"].items():
        pattern = template.rstrip("/").split("/")
        if len(pattern) == len(segments) and all(
            p == s or (p.startswith("{") and s) for p, s in zip(pattern, segments, strict=True)
        ):
            return ", ".join(sorted(method.upper() for method in item if method in _METHODS))
    return None


def invalid(errors: Sequence[Any]) -> tuple[str, list[dict[str, Any]]]:
    """The message and field details of an invalid request, from pydantic's ``errors``."""
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "invalid")
    details = [{"field": ".".join(map(str, e.get("loc", ()))), "message": e.get("msg")}
               for e in errors]  # fmt: skip
    return message, details


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, details = invalid(exc.errors())
    return problem(request, 400, "INVALID_REQUEST", message, extra={"details": details})


def unexpected(path: str) -> tuple[int, dict[str, Any]]:
    """The answer to an error nothing here expected (it is logged where it is caught)."""
    message = "an unexpected error; it is logged, and nothing of this request was kept"
    return 500, body(path, 500, "INTERNAL_ERROR", message, family="INTERNAL_ERROR")


def unparsable(message: str) -> dict[str, Any]:
    """The 400 body for bytes that are not an HTTP request (answered by the server)."""
    return body("/", 400, "INVALID_HTTP", f"not an HTTP/1.1 request: {message}")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    status, content = unexpected(request.url.path)
    return JSONResponse(content, status_code=status)


def install(app: FastAPI) -> None:
    """Register the one mapping from errors to responses."""
    for known in (Problem, InvalidInput, ConfigError, StorageError, TooManyCalls):
        app.add_exception_handler(known, _known)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(Exception, _unexpected)  # the framework logs it, then re-raises
