"""OpenTelemetry export (``pip install "sherlock-ai[otel]"``): measurements as span attributes
and metric instruments, trace ids in the log records.

``OpenTelemetryExporter().install()``:

- a measured web request adds ``sherlock.memory.*`` attributes to the span that is current when
  it ends (the server span, when OpenTelemetry's middleware wraps sherlock_ai's: see
  docs/metrics.md); a decorated function or tracker adds a ``sherlock.memory`` span event;
- histograms ``sherlock.request.duration`` (s), ``sherlock.request.rss_growth`` (By) and
  ``sherlock.request.traced_peak`` (By) per method, route and status class, through the
  OpenTelemetry metrics API (any configured exporter ships them);
- every log record gets ``trace_id`` and ``span_id`` (32 and 16 hex digits, ``"-"`` outside a
  span), so text formats can show them and JSON lines carry them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Dict, Optional

from opentelemetry import metrics, trace

from .. import sinks
from ..measurement import Measurement
from ._common import status_class

ATTRIBUTE_PREFIX = "sherlock.memory."
NO_TRACE = "-"

_factory_lock = threading.Lock()


def span_attributes(m: Measurement) -> Dict[str, Any]:
    """The ``sherlock.memory.*`` attributes of a measurement (``None`` figures left out)."""
    out: Dict[str, Any] = {
        ATTRIBUTE_PREFIX + "name": m.name,
        ATTRIBUTE_PREFIX + "status": m.status,
        ATTRIBUTE_PREFIX + "duration_s": m.duration,
        ATTRIBUTE_PREFIX + "concurrent": m.concurrent,
    }
    for key in ("rss", "rss_change", "traced", "traced_peak"):
        value = getattr(m, key)
        if value is not None:
            out[f"{ATTRIBUTE_PREFIX}{key}_bytes"] = value
    if m.request_id:
        out["sherlock.request_id"] = m.request_id
    return out


class OpenTelemetryExporter:
    """Hands sherlock_ai's measurements to OpenTelemetry.

    ``meter_provider``: where the histograms come from (default: the global provider).
    ``span_attributes``/``metrics``: turn either part off. Nothing happens until
    :meth:`install`.
    """

    def __init__(self, *, meter_provider: Any = None, span_attributes: bool = True,
                 metrics: bool = True) -> None:
        for name, flag in (("span_attributes", span_attributes), ("metrics", metrics)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.span_attributes = span_attributes
        self.meter_provider = meter_provider
        self._histograms: Optional[Dict[str, Any]] = None
        if metrics:
            meter = _meter(meter_provider)
            self._histograms = {
                "duration": meter.create_histogram(
                    "sherlock.request.duration", unit="s",
                    description="Time from the request's start to its response's last byte."),
                "rss_growth": meter.create_histogram(
                    "sherlock.request.rss_growth", unit="By",
                    description="Growth of the process's RSS over the request (0 when it "
                                "shrank); process-wide."),
                "traced_peak": meter.create_histogram(
                    "sherlock.request.traced_peak", unit="By",
                    description="Most Python memory the request had allocated at once "
                                "(tracemalloc); only with trace_malloc."),
            }
        self._installed = False
        self._lock = threading.Lock()

    def install(self) -> OpenTelemetryExporter:
        """Start exporting, and give log records ``trace_id``/``span_id`` (idempotent)."""
        with self._lock:
            if not self._installed:
                install_trace_context_factory()
                sinks.add_sink(self, wants_all=self._histograms is not None)
                self._installed = True
        return self

    def uninstall(self) -> None:
        """Stop exporting (log records keep their trace ids)."""
        with self._lock:
            sinks.remove_sink(self)
            self._installed = False

    def __call__(self, m: Measurement) -> None:
        route = m.attributes.get("route")
        if self.span_attributes and not m.below_threshold:
            span = trace.get_current_span()
            if span.is_recording():
                if route is not None and m.kind == "memory":
                    span.set_attributes(span_attributes(m))
                else:
                    span.add_event("sherlock.memory", span_attributes(m))
        if self._histograms is not None and route is not None and m.kind == "memory":
            labels = {"http.request.method": m.attributes.get("method", "OTHER"),
                      "http.route": route,
                      "status_class": status_class(m.attributes.get("status_code"))}
            self._histograms["duration"].record(m.duration, labels)
            if m.rss_change is not None:
                self._histograms["rss_growth"].record(max(m.rss_change, 0), labels)
            if m.traced_peak is not None:
                self._histograms["traced_peak"].record(m.traced_peak, labels)


def _meter(provider: Any) -> Any:
    if provider is None:
        return metrics.get_meter("sherlock_ai")
    return provider.get_meter("sherlock_ai")


def install_trace_context_factory() -> None:
    """Make every log record created from now on carry ``trace_id`` and ``span_id`` of the
    span current where it is logged (``"-"`` outside a span). Idempotent."""
    with _factory_lock:
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
        if getattr(previous, "_sherlock_ai_trace", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
                record.span_id = format(context.span_id, "016x")
            else:
                record.trace_id = record.span_id = NO_TRACE
            return record

        factory._sherlock_ai_trace = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
