"""OpenTelemetry's SDK set up as many services set it up: spans wait in its batch span
processor until a batch can be exported, to a collector that is nowhere here."""

from __future__ import annotations

from typing import Any, Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class NowhereCollector(SpanExporter):
    """Where a service's spans would go; here nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def batched_tracing(**processor_options: Any) -> TracerProvider:
    """A tracer provider whose spans go through a ``BatchSpanProcessor`` (its options:
    ``processor_options``) to :class:`NowhereCollector`. Shut it down when done."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NowhereCollector(), **processor_options))
    return provider
