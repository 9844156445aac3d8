"""OpenTelemetry traces of calls: optional (``pip install 'sluicegate[otel]'``), off unless
the operator turns them on.

:func:`enable` builds a tracer provider that exports over OTLP/HTTP, configured as every
OpenTelemetry SDK is, by the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; default ``http://localhost:4318``),
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME`` (default ``sluicegate``),
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and the batch processor's
``OTEL_BSP_*``. It answers a :class:`CallSpans`, a reporter: the runtime hands it every
finished call, as it does to the call log and the reports. Nothing of the SDK is imported
until :func:`enable` runs, so with tracing off nothing changes.

A call is one span, ``sluicegate.call``, from its arrival at the gate (its queueing
included) to its end, as the gate's clock measured them. Attributes: ``sluicegate.org``,
``.sandbox``, ``.journey``, ``.service``, ``.call_id``, ``.outcome``, ``.attempts``,
``.retries``, ``.queued_ms``, ``.execution_ms``, ``http.request.method``,
``server.address`` (the host: never the URL, whose query may hold a secret) and, when an
answer came, ``http.response.status_code``. A call that did not succeed has the status
``ERROR`` and ``error.type`` (its last error's kind). A call that waited in a throttling
queue has a child span, ``sluicegate.queue``, over the wait. Attempts have no span of their
own: the gate reports a call once, when it ends, with counts but no times per attempt.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sluicegate import __version__
from sluicegate.call import Call
from sluicegate.clock import Clock
from sluicegate.errors import InvalidInput
from sluicegate.outcomes import CallResult, Outcome

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

SERVICE_NAME = "sluicegate"
EXTRA = "pip install 'sluicegate[otel]'"


def available() -> bool:
    """Whether the ``otel`` extra (OpenTelemetry's SDK and OTLP exporter) is installed."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


def enable(*, clock: Clock) -> CallSpans:
    """Spans of calls exported over OTLP as the ``OTEL_*`` variables say; ``InvalidInput``
    (``INVALID_SETTINGS``) when the ``otel`` extra is not installed."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        needed = f"tracing needs OpenTelemetry's SDK and exporter: {EXTRA}"
        raise InvalidInput("INVALID_SETTINGS", needed) from None
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return CallSpans(provider=provider, clock=clock)


class CallSpans:
    """A reporter that turns every finished call into a span of ``provider``'s."""

    def __init__(self, *, provider: TracerProvider, clock: Clock) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("sluicegate", __version__)
        self._clock = clock

    def record(self, call: Call, result: CallResult) -> None:
        from opentelemetry.trace import Status, StatusCode, set_span_in_context

        end = _ns(self._clock.now())
        granted = end - _ns(result.execution_ms / 1000)
        arrived = granted - _ns(result.queued_ms / 1000)
        attributes: dict[str, str | int | float] = {
            "sluicegate.org": call.org,
            "sluicegate.sandbox": call.sandbox,
            "sluicegate.journey": call.journey,
            "sluicegate.service": call.service.value,
            "sluicegate.call_id": result.call_id,
            "sluicegate.outcome": result.outcome.value,
            "sluicegate.attempts": result.attempts,
            "sluicegate.retries": result.retries,
            "sluicegate.queued_ms": result.queued_ms,
            "sluicegate.execution_ms": result.execution_ms,
            "http.request.method": call.method,
            "server.address": urlsplit(call.url).hostname or "",
            "sluicegate.endpoint": result.endpoint,
        }
        if result.response is not None:
            attributes["http.response.status_code"] = result.response.status
        if result.outcome is not Outcome.SUCCESS and result.error is not None:
            attributes["error.type"] = result.error.kind.value
        span = self._tracer.start_span("sluicegate.call", start_time=arrived, attributes=attributes)
        if result.outcome is not Outcome.SUCCESS:
            message = result.error.message if result.error is not None else result.outcome.value
            span.set_status(Status(StatusCode.ERROR, message))
        if result.queued_ms > 0:
            self._tracer.start_span(
                "sluicegate.queue", context=set_span_in_context(span), start_time=arrived
            ).end(end_time=granted)
        span.end(end_time=end)

    async def written(self) -> None:
        """Spans are not durable: nothing to wait for."""

    async def aclose(self) -> None:
        """Export the spans still buffered, then stop (off the event loop: it blocks)."""
        await asyncio.to_thread(self._provider.shutdown)


def _ns(seconds: float) -> int:
    """Nanoseconds, whole seconds apart (``seconds * 1e9`` would round an epoch time to a
    float's 256 ns)."""
    whole = int(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)
