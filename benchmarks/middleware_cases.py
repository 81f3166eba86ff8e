"""The request cases the middleware benchmarks compare: a bare Starlette app, the peers
(asgi-correlation-id, prometheus-fastapi-instrumentator, OpenTelemetry's ASGI middleware with
the SDK) and sherlock_ai in several set-ups, each as ``(set_up, wrap)``.

``set_up()`` runs before each round of a case (sherlock_ai's logging into a fresh folder, an
exporter installed); :func:`reset` undoes it after the round. ``wrap(app)`` adds the case's
middleware to a fresh app once. Shared by ``bench_middleware`` (in process) and
``server_app`` (under uvicorn).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import tempfile
from typing import Any, Callable, Dict, Optional, Tuple

Case = Tuple[Callable[[], None], Callable[[Any], Any]]

_FOLDER = tempfile.TemporaryDirectory(prefix="sherlock-bench-")  # removed at exit
_record_factory: Optional[Callable[..., logging.LogRecord]] = None


def starlette_app() -> Any:
    """The app every case wraps: ``/items/{id}`` returns a short text (the trivial handler);
    ``/realistic`` awaits 2 ms and returns a 5 kB JSON document."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    document = {"items": [{"id": i, "name": f"item {i}", "price": i * 1.25, "tags": ["a", "b"]}
                          for i in range(80)]}

    async def item(request: Any) -> Any:
        return PlainTextResponse(f"item {request.path_params['item_id']}")

    async def realistic(request: Any) -> Any:
        await asyncio.sleep(0.002)
        return JSONResponse(document)

    return Starlette(routes=[Route("/items/{item_id}", item), Route("/realistic", realistic)])


def fresh_folder() -> str:
    """A new folder for one round's log files (all removed when the process exits)."""
    return tempfile.mkdtemp(dir=_FOLDER.name)


def default_setup() -> None:
    """``sherlock_ai()`` as a service calls it (text lines into app.log and monitoring.log),
    the console off so that nothing reaches the terminal."""
    import sherlock_ai

    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=fresh_folder(),
                                                      console_enabled=False))


def one_file(json_lines: bool = False) -> Callable[[], None]:
    """Set-up writing the request lines (``MonitoringLogger``) to one file only."""
    def setup() -> None:
        import sherlock_ai
        from sherlock_ai import LogFileConfig, LoggingConfig

        sherlock_ai.sherlock_ai(LoggingConfig(
            logs_dir=fresh_folder(), console_enabled=False,
            log_files={"monitoring": LogFileConfig("monitoring", loggers=("MonitoringLogger",))},
            log_format_type="json" if json_lines else "log"))

    return setup


_devnull = open(os.devnull, "w")  # noqa: SIM115 - open for the life of the process


def root_handler_setup() -> None:
    """A handler of the user's on the root logger (``logging.basicConfig``, writing to
    /dev/null), then the default set-up: the set-up hands its lines to logging too."""
    logging.basicConfig(level=logging.INFO, stream=_devnull)
    default_setup()


def no_line() -> None:
    """The measurement without its line: the request logger above INFO."""
    logging.getLogger("MonitoringLogger").setLevel(logging.WARNING)


def _nothing() -> None:
    return None


def _same(app: Any) -> Any:
    return app


def _correlation_id(app: Any) -> Any:
    from asgi_correlation_id import CorrelationIdMiddleware

    app.add_middleware(CorrelationIdMiddleware)
    return app


def _instrumentator(app: Any) -> Any:
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    Instrumentator(registry=CollectorRegistry()).instrument(app)
    return app


def _tracer_provider() -> Any:
    """An SDK tracer provider whose finished spans are exported synchronously and dropped:
    the SDK's full path per span, nothing kept."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Any) -> Any:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    return provider


def _meter_provider() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    return MeterProvider(metric_readers=[InMemoryMetricReader()])


def _otel_asgi(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """OpenTelemetry's ASGI middleware (SDK tracer and meter providers of its own) outside
    ``inner``'s wrapping."""
    def wrap(app: Any) -> Any:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return OpenTelemetryMiddleware(inner(app), tracer_provider=_tracer_provider(),
                                       meter_provider=_meter_provider())

    return wrap


def _floor(app: Any) -> Any:
    from benchmarks.floor import FloorMiddleware

    return FloorMiddleware(app, os.path.join(fresh_folder(), "monitoring.log"))


def _ours(app: Any) -> Any:
    from sherlock_ai.integrations.asgi import SherlockMiddleware

    return SherlockMiddleware(app)


def _guarded(app: Any) -> Any:
    from sherlock_ai.integrations.asgi import SherlockMiddleware

    return SherlockMiddleware(app, memory_budget="1GB", rss_limit="1TB")


def _with_prometheus() -> None:
    from prometheus_client import CollectorRegistry

    from sherlock_ai.consumers import add_consumer
    from sherlock_ai.exporters.prometheus import PrometheusExporter

    one_file()()
    add_consumer(PrometheusExporter(registry=CollectorRegistry()))


def _with_otel_metrics() -> None:
    from sherlock_ai.consumers import add_consumer
    from sherlock_ai.exporters.opentelemetry import OpenTelemetryExporter

    one_file()()
    add_consumer(OpenTelemetryExporter(meter_provider=_meter_provider(), span_attributes=False))


class _OtelExporterCase:
    """OpenTelemetry's middleware outside ours, and our exporter putting the request's figures
    on its server span and in histograms. The exporter adds a span processor to the tracer
    provider for good, so this case has a provider of its own."""

    def __init__(self) -> None:
        self.provider = _tracer_provider()

    def set_up(self) -> None:
        from sherlock_ai.consumers import add_consumer
        from sherlock_ai.exporters.opentelemetry import OpenTelemetryExporter

        one_file()()
        add_consumer(OpenTelemetryExporter(meter_provider=_meter_provider(),
                                           tracer_provider=self.provider))

    def wrap(self, app: Any) -> Any:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return OpenTelemetryMiddleware(_ours(app), tracer_provider=self.provider,
                                       meter_provider=_meter_provider())


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (the peers are optional)."""
    return importlib.util.find_spec(module) is not None


def cases() -> Dict[str, Tuple[str, Case]]:
    """key -> (label, (set_up, wrap)); peers that are not installed are left out."""
    out: Dict[str, Tuple[str, Case]] = {
        "bare": ("bare Starlette app (baseline)", (_nothing, _same)),
        "cid": ("asgi-correlation-id", (_nothing, _correlation_id)),
    }
    if os.path.exists("/proc/self/statm"):  # Linux: the floor reads RSS there
        out["floor"] = ("hand-written floor: id, header, 2 RSS reads, one line, one write "
                        "(not a product)", (_nothing, _floor))
    if installed("prometheus_fastapi_instrumentator"):
        out["pfi"] = ("prometheus-fastapi-instrumentator", (_nothing, _instrumentator))
    if installed("opentelemetry.instrumentation.asgi"):
        out["otel"] = ("OpenTelemetry ASGI + SDK", (_nothing, _otel_asgi(_same)))
    out.update({
        "default": ("sherlock_ai, default `sherlock_ai()` set-up (two files)",
                    (default_setup, _ours)),
        "root_handler": ("sherlock_ai, default set-up after `logging.basicConfig()` (a root "
                         "handler of the user's)", (root_handler_setup, _ours)),
        "text": ("sherlock_ai, one text file", (one_file(), _ours)),
        "json": ("sherlock_ai, one JSON file", (one_file(json_lines=True), _ours)),
        "no_line": ("sherlock_ai, no line (request logger above INFO)", (no_line, _ours)),
        "prom": ("sherlock_ai, one text file + PrometheusExporter", (_with_prometheus, _ours)),
        "guard": ("sherlock_ai, one text file + memory_budget and rss_limit",
                  (one_file(), _guarded)),
        "otel_metrics": ("sherlock_ai, one text file + OpenTelemetryExporter (metrics)",
                         (_with_otel_metrics, _ours)),
    })
    if installed("opentelemetry.instrumentation.asgi"):
        otel = _OtelExporterCase()
        out["otel_ours"] = ("OpenTelemetry ASGI + SDK, sherlock_ai inside, one text file",
                            (one_file(), _otel_asgi(_ours)))
        out["otel_exporter"] = ("the same + OpenTelemetryExporter (span attributes, metrics)",
                                (otel.set_up, otel.wrap))
    return out


def reset() -> None:
    """Undo any case's set-up: sherlock_ai's handlers, levels, consumers, record factory."""
    import sherlock_ai
    from sherlock_ai import consumers

    global _record_factory
    if _record_factory is None:
        from sherlock_ai.logs.records import install_request_id_factory

        install_request_id_factory()
        _record_factory = logging.getLogRecordFactory()
    sherlock_ai.SherlockAI.cleanup()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "stream", None) is _devnull:  # root_handler_setup's
            root.removeHandler(handler)
    logging.getLogger("MonitoringLogger").setLevel(logging.NOTSET)
    for consumer in list(consumers.registry):
        if consumer is not sherlock_ai.log_line:
            consumers.remove_consumer(consumer)
    # The OpenTelemetry exporter's trace-id factory stays installed for good: not in the
    # cases after it.
    logging.setLogRecordFactory(_record_factory)


def log_lines(folder: str, word: str = "MEMORY", stem: str = "monitoring") -> int:
    """How many lines containing ``word`` the files ``stem.*`` under ``folder`` hold (backups
    included)."""
    count = 0
    for base, _, names in os.walk(folder):
        for name in names:
            if not name.startswith(stem + "."):
                continue
            with open(os.path.join(base, name), "rb") as f:
                count += sum(1 for line in f if word.encode() in line)
    return count
