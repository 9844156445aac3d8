"""Every error the service sends is in the JSON error model: the server's own answer to
bytes that are not HTTP, and an error nothing expected (500), as much as the routes'."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import sluicegate_serve
from tests.service.conftest import StartService

from sluicegate.service import callflow
from sluicegate.service.routes import reports


@pytest.mark.slow
async def test_bytes_that_are_not_http_get_a_json_400(tmp_path: Path) -> None:
    """``sluicegate serve`` answers an unparsable request line with 400 INVALID_HTTP in
    JSON (uvicorn's own answer is plain text), and closes the connection."""
    async with sluicegate_serve(tmp_path / "data") as served:
        host, port = served.base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()  # until the server closes
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().lower().splitlines()
    assert ("http/1.1 400 bad request", "content-type: application/json") == (
        lines[0], next(line for line in lines if line.startswith("content-type")))  # fmt: skip
    assert (400, "INVALID_HTTP") == (json.loads(body)["status"], json.loads(body)["code"])


def exploding(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug")


@pytest.mark.parametrize(
    ("target", "name", "method", "path"),
    [
        (callflow, "make", "POST", "/v1/calls"),  # the call routes' own door
        (reports, "summarize", "GET", "/v1/reports/summary"),  # a route of the framework
    ],
    ids=["call-route", "framework-route"],
)
async def test_an_unexpected_error_is_a_json_500(
    start_service: StartService, monkeypatch: pytest.MonkeyPatch,
    target: Any, name: str, method: str, path: str,
) -> None:  # fmt: skip
    """A route that raises what nothing expected: 500 INTERNAL_ERROR in JSON."""
    monkeypatch.setattr(target, name, exploding)
    service = await start_service()
    headers = await service.key()
    body = {"journeyId": "j", "service": "action",
            "request": {"method": "GET", "url": "http://127.0.0.1:9/"}}  # fmt: skip
    status, problem = await service.request(method, path, headers, body)
    assert (500, "INTERNAL_ERROR") == (status, problem["code"])
