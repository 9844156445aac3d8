"""OpenTelemetry traces of calls: a span per call from the gate's reports, exported over
OTLP when enabled, and nothing of the SDK loaded when not."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from tests.loopback import _serving

from sluicegate.configs import ConfigKind
from sluicegate.gate import Gate
from sluicegate.settings import Settings
from sluicegate.testing import FakeClock, MockTransport
from sluicegate.transport import Request, Response

API = "https://api.example.org"
WINDOW = 1 + Settings().send_guard_ms / 1000


def test_tracing_off_loads_nothing_of_the_sdk() -> None:
    """Importing the service and its tracing module loads no OpenTelemetry SDK or exporter."""
    probe = ("import sys, sluicegate.service.server, sluicegate.service.tracing; "
             "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
             "'opentelemetry.exporter'))))")  # fmt: skip
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           check=True, timeout=60)  # fmt: skip
    assert "[]" == found.stdout.strip(), found.stderr


pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode  # noqa: E402

from sluicegate.service.tracing import CallSpans, enable  # noqa: E402


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def gate(exported: InMemorySpanExporter, clock: FakeClock) -> AsyncIterator[Gate]:
    """A gate in memory whose calls answer by path (``/missing`` 404, ``/slow`` after
    0.25 s, others 200), reporting to spans kept in ``exported``."""

    async def handle(request: Request) -> Response:
        if request.url.endswith("/slow"):
            await clock.sleep(0.25)
        return Response(status=404 if request.url.endswith("/missing") else 200)

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    spans = CallSpans(provider=provider, clock=clock)
    async with Gate.open(clock=clock, transport=MockTransport(handle), reporter=spans) as gate:
        yield gate


def ns(seconds: float) -> Any:
    """``seconds`` in nanoseconds, as exactly as a float epoch time holds them (to 1 µs)."""
    return pytest.approx(seconds * 1e9, abs=1000, rel=0)


def call(path: str, **extra: Any) -> dict[str, Any]:
    return {"org": "acme", "sandbox": "prod", "journey": "welcome", "service": "action",
            "method": "POST", "url": API + path} | extra  # fmt: skip


async def test_a_call_is_one_span_with_its_attributes(
    gate: Gate, exported: InMemorySpanExporter, clock: FakeClock
) -> None:
    """The span covers the call on the gate's clock, names its org, journey and outcome,
    and is an error when the call did not succeed."""
    started = clock.now()
    slow = asyncio.create_task(gate.call(**call("/slow")))
    await clock.run_until(slow, step=0.05, limit=5)
    missing = await gate.call(**call("/missing", journey="other"))
    first, second = exported.get_finished_spans()
    assert ("sluicegate.call", "sluicegate.call") == (first.name, second.name)
    assert {
        "sluicegate.org": "acme",
        "sluicegate.sandbox": "prod",
        "sluicegate.journey": "welcome",
        "sluicegate.service": "action",
        "sluicegate.call_id": slow.result().call_id,
        "sluicegate.outcome": "success",
        "sluicegate.attempts": 1,
        "sluicegate.retries": 0,
        "sluicegate.queued_ms": 0.0,
        "sluicegate.execution_ms": 250.0,
        "http.request.method": "POST",
        "server.address": "api.example.org",
        "sluicegate.endpoint": slow.result().endpoint,
        "http.response.status_code": 200,
    } == dict(first.attributes or {})
    assert (ns(started), ns(started + 0.25)) == (first.start_time, first.end_time)
    assert StatusCode.UNSET == first.status.status_code
    attributes = dict(second.attributes or {})
    assert (missing.call_id, "http_error", "other", 404, "http") == (
        attributes["sluicegate.call_id"], attributes["sluicegate.outcome"],
        attributes["sluicegate.journey"], attributes["http.response.status_code"],
        attributes["error.type"],
    )  # fmt: skip
    assert StatusCode.ERROR == second.status.status_code


async def test_a_queued_call_has_a_queue_span(
    gate: Gate, exported: InMemorySpanExporter, clock: FakeClock
) -> None:
    """A call that waited in a throttling queue has a child span over the wait."""
    scope = {"org": "acme", "sandbox": "prod"}
    payload = {"urlPattern": f"{API}/thr/*", "methods": ["POST"], "maxThroughput": 200}
    record = await gate.rules.create(ConfigKind.THROTTLING, payload=payload, **scope)
    await gate.rules.deploy(ConfigKind.THROTTLING, uid=record.uid, **scope)
    await asyncio.gather(*(gate.call(**call("/thr/a")) for _ in range(200)))
    exported.clear()
    queued_at = clock.now()
    late = asyncio.create_task(gate.call(**call("/thr/a")))
    await clock.run_until(late, step=WINDOW / 4, limit=5)
    spans: dict[str, ReadableSpan] = {span.name: span for span in exported.get_finished_spans()}
    whole, wait = spans["sluicegate.call"], spans["sluicegate.queue"]
    assert wait.parent is not None
    assert (whole.context.span_id, whole.context.trace_id) == (
        wait.parent.span_id, wait.context.trace_id)  # fmt: skip
    waited = late.result().queued_ms / 1000
    assert 0 < waited
    assert wait.start_time is not None
    assert wait.end_time is not None
    assert (whole.start_time, ns(queued_at), ns(waited)) == (
        wait.start_time, wait.start_time, wait.end_time - wait.start_time)  # fmt: skip


async def test_enabled_it_exports_over_otlp(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    """enable() sends the spans to the OTLP/HTTP endpoint of OTEL_EXPORTER_OTLP_ENDPOINT,
    as the service named ``sluicegate``, by the time it is closed."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    bodies: list[tuple[str, bytes]] = []

    async def collect(request: web.Request) -> web.Response:
        bodies.append((request.path, await request.read()))
        return web.Response(status=200, content_type="application/x-protobuf")

    async with _serving(collect) as base:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
        spans = enable(clock=clock)
        async with Gate.open(clock=clock, transport=MockTransport(lambda _: Response(status=200)),
                             reporter=spans) as gate:  # fmt: skip
            done = await gate.call(**call("/ok"))
        await spans.aclose()
    [(path, body)] = bodies
    sent = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = sent.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    [span] = [s for scope in resource_spans.scope_spans for s in scope.spans]
    attributes = {a.key: a.value for a in span.attributes}
    assert ("/v1/traces", "sluicegate", "sluicegate.call", done.call_id) == (
        path, service["service.name"], span.name,
        attributes["sluicegate.call_id"].string_value,
    )  # fmt: skip
