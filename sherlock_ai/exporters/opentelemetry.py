"""OpenTelemetry export (``pip install "sherlock-ai[otel]"``): measurements as span attributes
and metric instruments, trace ids in the log records.

``add_consumer(OpenTelemetryExporter())``:

- a measured web request adds ``sherlock.memory.*`` attributes to its outermost server span
  (OpenTelemetry's middleware's, not the one FastAPI opens inside it; see docs/metrics.md);
  a decorated function or tracker adds a ``sherlock.memory`` span event;
- histograms ``sherlock.request.duration`` (s), ``sherlock.request.rss_growth`` (By) and
  ``sherlock.request.traced_peak`` (By) per method, route and status class, through the
  OpenTelemetry metrics API (any configured exporter ships them); for Celery task runs,
  ``sherlock.task.duration``, ``.rss_growth`` and ``.traced_peak`` per task name and status;
- every log record gets ``trace_id`` and ``span_id`` (32 and 16 hex digits, ``"-"`` outside a
  span), so text formats can show them and JSON lines carry them.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from .._extras import missing_extra
from ..bounded import BoundedCache

try:
    from opentelemetry import metrics, trace
except ImportError as _exc:
    raise missing_extra(_exc, __name__) from _exc

from ..consumers import Consumer
from ..engine.measurement import Measurement
from ..safety import internal_errors
from .labels import TaskNames, status_class

ATTRIBUTE_PREFIX = "sherlock.memory."
NO_TRACE = "-"

_factory_lock = threading.Lock()
# The first server span started in this context (a request's task) and not yet superseded:
# FastAPI opens a server span of its own inside OpenTelemetry's middleware's, and the span a
# user looks at is the outer one.
_server_root: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "sherlock_ai_server_root", default=None)
_recording_providers: weakref.WeakSet[Any] = weakref.WeakSet()


_NAME, _STATUS, _DURATION, _CONCURRENT = (ATTRIBUTE_PREFIX + key for key in (
    "name", "status", "duration_s", "concurrent"))
_SIZES = tuple((key, f"{ATTRIBUTE_PREFIX}{key}_bytes")
               for key in ("rss", "rss_change", "traced", "traced_peak"))
# The most (method, route, status code) keys whose metric attributes are kept ready (the
# labels are bounded already; this is a backstop).
_LABELS_CACHE = 4096


def span_attributes(m: Measurement) -> Dict[str, Any]:
    """The ``sherlock.memory.*`` attributes of a measurement (``None`` figures left out)."""
    out: Dict[str, Any] = {_NAME: m.name, _STATUS: m.status, _DURATION: m.duration,
                           _CONCURRENT: m.concurrent}
    for key, attribute in _SIZES:
        value = getattr(m, key)
        if value is not None:
            out[attribute] = value
    if m.request_id:
        out["sherlock.request_id"] = m.request_id
    return out


class OpenTelemetryExporter(Consumer):
    """Hands sherlock_ai's measurements to OpenTelemetry.

    ``meter_provider``: where the histograms come from (default: the global provider).
    ``tracer_provider``: the SDK tracer provider whose server spans get the request's
    attributes (default: the global one). ``span_attributes``/``metrics``: turn either part
    off. Constructing it is its set-up: it adds a span processor to ``tracer_provider`` that
    remembers each request's outermost server span, and gives every log record made from then
    on ``trace_id``/``span_id`` (both once per process). Nothing is exported until it is
    registered: ``sherlock_ai.add_consumer(exporter)`` (``remove_consumer`` stops it).
    """

    def __init__(self, *, meter_provider: Any = None, tracer_provider: Any = None,
                 span_attributes: bool = True, metrics: bool = True) -> None:
        for name, flag in (("span_attributes", span_attributes), ("metrics", metrics)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.span_attributes = span_attributes
        self.meter_provider = meter_provider
        self.tracer_provider = tracer_provider
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
                "task_duration": meter.create_histogram(
                    "sherlock.task.duration", unit="s",
                    description="Time from a task run's start to its end (Celery)."),
                "task_rss_growth": meter.create_histogram(
                    "sherlock.task.rss_growth", unit="By",
                    description="Growth of the worker process's RSS over the task run (0 "
                                "when it shrank)."),
                "task_traced_peak": meter.create_histogram(
                    "sherlock.task.traced_peak", unit="By",
                    description="Most Python memory the task run had allocated at once "
                                "(tracemalloc); only with trace_malloc."),
            }
        self._task_names = TaskNames()
        # (task label, status) -> the task histograms' attributes.
        self._task_labels: Dict[Tuple[str, str], Dict[str, str]] = {}
        # (method, route, status code) -> the histograms' attributes, built once per key and
        # shared by its requests (the SDK copies what it keeps).
        self._labels: BoundedCache[Tuple[Any, ...], Dict[str, str]] = \
            BoundedCache(_LABELS_CACHE)
        #: The histograms count every request, logged or not.
        self.wants_all = self._histograms is not None
        if span_attributes:
            remember_server_roots(tracer_provider or trace.get_tracer_provider())
        install_trace_context_factory()

    def measurement_ended(self, m: Measurement) -> None:
        """Put a measurement on its span and in the histograms."""
        route = m.attributes.get("route")
        if self.span_attributes and not m.below_threshold:
            span = trace.get_current_span()
            if route is not None and m.kind == "memory":
                span = _request_span(span)
                if span.is_recording():
                    span.set_attributes(span_attributes(m))
            elif span.is_recording():
                span.add_event("sherlock.memory", span_attributes(m))
        histograms = self._histograms
        task = m.attributes.get("task")
        if histograms is not None and task is not None and m.kind == "memory":
            self._task_finished(histograms, task, m)
        if histograms is not None and route is not None and m.kind == "memory":
            key = (m.attributes.get("method", "OTHER"), route, m.attributes.get("status_code"))
            labels = self._labels.get(key)
            if labels is None:
                labels = self._labels_of(key)
            _record(histograms["duration"], histograms["rss_growth"], histograms["traced_peak"],
                    m, labels)

    def _task_finished(self, histograms: Dict[str, Any], task: str, m: Measurement) -> None:
        key = (self._task_names.label(task), m.status)
        labels = self._task_labels.get(key)
        if labels is None:
            labels = self._task_labels.setdefault(key, {"task": key[0], "status": key[1]})
        _record(histograms["task_duration"], histograms["task_rss_growth"],
                histograms["task_traced_peak"], m, labels)

    def _labels_of(self, key: Tuple[Any, ...]) -> Dict[str, str]:
        """The histograms' attributes for ``key``, kept for the next requests."""
        labels = {"http.request.method": key[0], "http.route": key[1],
                  "status_class": status_class(key[2])}
        return self._labels.keep(key, labels)



def _record(duration: Any, rss_growth: Any, traced_peak: Any, m: Measurement,
            labels: Dict[str, str]) -> None:
    """Record ``m``'s figures in a request's or a task run's three histograms."""
    duration.record(m.duration, labels)
    if m.rss_change is not None:
        rss_growth.record(max(m.rss_change, 0), labels)
    if m.traced_peak is not None:
        traced_peak.record(m.traced_peak, labels)


def _request_span(current: Any) -> Any:
    """The outermost server span of the request ending now: the server span remembered in
    this context when it is still open, else ``current``."""
    root = _server_root.get()
    if root is None or root is current or not root.is_recording():
        return current
    return root


def _remember(span: Any) -> None:
    if getattr(span, "kind", None) is not trace.SpanKind.SERVER:
        return
    known = _server_root.get()
    if known is not None and known.is_recording():
        # A server span opened inside the request's own: FastAPI's, which starts from the
        # request's headers (a trace of its own when they carry none).
        return
    _server_root.set(span)


def remember_server_roots(tracer_provider: Any) -> bool:
    """Add to ``tracer_provider`` (an SDK ``TracerProvider``) a span processor that remembers,
    per context, the outermost open server span. Returns whether it could (not for the API's
    no-op or proxy providers, nor without the SDK). Idempotent per provider."""
    add = getattr(tracer_provider, "add_span_processor", None)
    if not callable(add):
        return False
    try:
        from opentelemetry.sdk.trace import SpanProcessor
    except ImportError:
        return False
    with _factory_lock:
        if tracer_provider in _recording_providers:
            return True

        class ServerRootProcessor(SpanProcessor):
            """Remembers the request's outermost server span (see ``_request_span``)."""

            def on_start(self, span: Any, parent_context: Any = None) -> None:
                with internal_errors:
                    _remember(span)

        add(ServerRootProcessor())
        _recording_providers.add(tracer_provider)
    return True


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
        # sherlock_ai's own lines then carry the ids too (rendered through a record).
        from ..logs.writer import factory_changed

        factory_changed()
