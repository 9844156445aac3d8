"""Bad input to a call is a clear error with a code, never a crash and never a call."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import sluicegate
from conftest import API, ORG, SANDBOX
from sluicegate.errors import InvalidCall
from sluicegate.transport import Request, Response

GOOD: dict[str, Any] = {
    "org": ORG, "sandbox": SANDBOX, "journey": "j", "service": "action",
    "method": "POST", "url": f"{API}/x",
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"service": "webhook"}, "INVALID_SERVICE"),
        ({"service": "ACTION"}, "INVALID_SERVICE"),
        ({"url": "not a url"}, "INVALID_URL"),
        ({"url": "https://api.example.org:99999/x"}, "INVALID_URL"),
        ({"url": "/relative/path"}, "INVALID_URL"),
        ({"url": ""}, "INVALID_URL"),
        ({"method": "BREW"}, "INVALID_METHOD"),
        ({"timeout_seconds": 0}, "INVALID_TIMEOUT"),
        ({"timeout_seconds": 31}, "INVALID_TIMEOUT"),
        ({"timeout_seconds": True}, "INVALID_TIMEOUT"),
        ({"journey": ""}, "INVALID_CALL"),
        ({"headers": {"X-Bad": "a\r\nInjected: 1"}}, "INVALID_HEADER"),
        ({"headers": {"Bad Name": "v"}}, "INVALID_HEADER"),
        # Lone surrogates (a JSON "\udfff" read by Python's json): no UTF-8 can carry them.
        ({"journey": "j\udfff"}, "INVALID_CALL"),
        ({"url": f"{API}/\udfff"}, "INVALID_URL"),
        ({"headers": {"X-Evil": "\udfff"}}, "INVALID_HEADER"),
        ({"body": "\ud800 half a pair"}, "INVALID_BODY"),
    ],
)
async def test_invalid_call_is_refused_with_a_code(
    open_gate: Any, change: dict[str, Any], code: str
) -> None:
    """Each kind of bad input raises InvalidCall with its code, and nothing is sent."""
    gate, transport = await open_gate(lambda _: Response(status=200))
    with pytest.raises(InvalidCall) as caught:
        await gate.call(**GOOD | change)
    assert code == caught.value.code
    assert caught.value.message
    assert [] == transport.requests


async def test_option_is_options(open_gate: Any) -> None:
    """Adobe's OPTION spelling is sent as the HTTP method OPTIONS."""
    gate, transport = await open_gate(lambda _: Response(status=200))
    await gate.call(**GOOD | {"method": "option"})
    assert ["OPTIONS"] == [r.method for r in transport.requests]


async def test_string_body_is_sent_as_utf8(open_gate: Any) -> None:
    """A str body is encoded as UTF-8; bytes go as they are."""
    seen: list[Request] = []

    def keep(request: Request) -> Response:
        seen.append(request)
        return Response(status=200)

    gate, _ = await open_gate(keep)
    await gate.call(**GOOD | {"body": "héllo"})
    await gate.call(**GOOD | {"body": b"\x00\xff"})
    assert ["héllo".encode(), b"\x00\xff"] == [r.body for r in seen]


def test_public_names_are_exactly_the_curated_ones() -> None:
    """The package's door: __all__ lists every public name, and each one exists."""
    public = {name for name in dir(sluicegate) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(sluicegate, name)).__name__ == "module"}
    assert sorted(public - modules) == sorted(sluicegate.__all__)


def test_the_core_imports_no_framework_driver_or_cli() -> None:
    """`import sluicegate` loads no web framework, HTTP client, CLI or metrics library:
    those are imported at the edges, when used."""
    edges = ["aiohttp", "fastapi", "starlette", "uvicorn", "typer", "rich", "prometheus_client"]
    code = f"import sys, sluicegate; print([m for m in {edges!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == done.stdout.strip()
