"""``/healthz`` and ``/readyz``: for load balancers, without a key."""

from __future__ import annotations

from tests.service.conftest import StartService


async def test_healthz_and_readyz_answer_without_a_key(start_service: StartService) -> None:
    """A running service is healthy and ready, every check ok; neither needs a key."""
    service = await start_service()
    assert (200, {"status": "ok"}) == await service.request("GET", "/healthz", {})
    status, ready = await service.request("GET", "/readyz", {})
    assert (200, {"database", "engine store", "call log writer", "report writer"}) == (
        status, {name for name, state in ready["checks"].items() if state == "ok"})  # fmt: skip


async def test_readyz_fails_when_a_background_writer_stopped(start_service: StartService) -> None:
    """A writer that stopped (here: cancelled) makes the service not ready: 503 NOT_READY,
    naming it, in the JSON error model."""
    service = await start_service()
    writer = service.runtime.calls._writer
    assert writer is not None
    writer.cancel()
    status, problem = await service.request("GET", "/readyz", {})
    assert (503, "NOT_READY", "stopped") == (
        status, problem["code"], problem["checks"]["call log writer"])  # fmt: skip
