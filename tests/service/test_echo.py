"""``/dev/echo``, the built-in external system of development mode, on a real service."""

from __future__ import annotations

from typing import Any

import pytest
from tests.service.conftest import Running, StartService


def call(url: str, journey: str = "hello", method: str = "POST") -> dict[str, Any]:
    return {"journeyId": journey, "service": "action", "waitSeconds": 30,
            "request": {"method": method, "url": url, "body": {"hello": "world"},
                        "headers": {"Authorization": "Bearer partner-secret"}}}  # fmt: skip


async def echoed(running: Running, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with running.http.request(kwargs.pop("method", "POST"), running.base + path,
                                    **kwargs) as response:  # fmt: skip
        return response.status, await response.json() if response.content_length else None


async def test_a_call_to_the_echo_gets_its_request_back(start_service: StartService) -> None:
    running = await start_service(dev=True)
    headers = await running.key("demo")
    url = f"{running.base}/dev/echo/orders/7?ref=a%20b"

    status, result = await running.request("POST", "/v1/calls", headers, call(url))

    assert (200, "success", 1) == (status, result["outcome"], result["attempts"])
    seen = result["response"]["body"]
    assert {"method": "POST", "path": "/dev/echo/orders/7", "query": {"ref": "a b"},
            "body": {"hello": "world"}, "bodyEncoding": "json"} == {
        k: seen[k] for k in ("method", "path", "query", "body", "bodyEncoding")
    }  # fmt: skip
    assert result["callId"] == seen["headers"]["idempotency-key"]
    assert "authorization" not in {name.lower() for name in seen["headers"]}


@pytest.mark.parametrize(("body", "content_type", "expected"), [
    (b"plain words", "text/plain", ("plain words", "text")),
    (b"\xff\x00", "application/octet-stream", ("/wA=", "base64")),
    (b'{"n": NaN}', "application/json", ('{"n": NaN}', "text")),
    (b"", "application/json", (None, None)),
])  # fmt: skip
async def test_bodies_are_echoed_as_json_text_or_base64(
    start_service: StartService, body: bytes, content_type: str, expected: tuple[Any, Any]
) -> None:
    running = await start_service(dev=True)

    status, seen = await echoed(running, "/dev/echo", data=body,
                                headers={"Content-Type": content_type})  # fmt: skip

    assert (200, expected) == (status, (seen["body"], seen["bodyEncoding"]))


async def test_the_status_knob_makes_a_failing_system(start_service: StartService) -> None:
    """``?status=503`` answers 503 to every attempt: the call is retried, then ends."""
    running = await start_service(dev=True)
    headers = await running.key("demo")

    _, result = await running.request(
        "POST", "/v1/calls", headers, call(f"{running.base}/dev/echo?status=503")
    )

    assert ("http_error", "http_503", 4) == (
        result["outcome"], result["joStatusCode"], result["attempts"]
    )  # fmt: skip
    assert "/dev/echo" == result["response"]["body"]["path"]


async def test_the_delay_knob_makes_a_slow_system(start_service: StartService) -> None:
    """``?delay_ms=`` longer than the journey's budget: the call ends ``timedout``."""
    running = await start_service(dev=True)
    headers = await running.key("demo")
    status, _ = await running.request("PUT", "/v1/journeys/slow", headers, {"timeoutSeconds": 1})
    assert 200 == status

    _, result = await running.request(
        "POST", "/v1/calls", headers, call(f"{running.base}/dev/echo?delay_ms=20000", "slow")
    )

    assert ("timedout", 1) == (result["outcome"], result["attempts"])


@pytest.mark.parametrize("query", [
    "status=99", "status=600", "status=abc", "status=%C2%B2", "delay_ms=30001",
    "delay_ms=-1", "delay_ms=1e3",
])  # fmt: skip
async def test_a_knob_out_of_range_is_a_400(start_service: StartService, query: str) -> None:
    running = await start_service(dev=True)

    status, problem = await echoed(running, f"/dev/echo?{query}", method="GET")

    assert (400, 400, "INVALID_REQUEST") == (status, problem["status"], problem["code"])
    assert query.split("=")[0] in problem["message"]


async def test_no_echo_without_development_mode(start_service: StartService) -> None:
    running = await start_service(dev=False)

    status, problem = await echoed(running, "/dev/echo", method="GET")

    assert (404, "NOT_FOUND") == (status, problem["code"])


async def test_the_echo_is_not_in_the_api_description(start_service: StartService) -> None:
    running = await start_service(dev=True)

    status, description = await echoed(running, "/openapi.json", method="GET")

    assert 200 == status
    assert not [path for path in description["paths"] if path.startswith("/dev")]
