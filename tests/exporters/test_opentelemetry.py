"""OpenTelemetry export with the real SDK: span attributes on the server span of
OpenTelemetry's ASGI middleware, histograms in an in-memory metric reader, trace ids in the
JSON log lines."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sherlock_ai
from sherlock_ai import LoggingConfig, monitor_memory
from sherlock_ai.consumers import add_consumer, remove_consumer
from sherlock_ai.exporters.opentelemetry import OpenTelemetryExporter
from sherlock_ai.integrations.asgi import SherlockMiddleware


@pytest.fixture
def otel():
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = add_consumer(OpenTelemetryExporter(meter_provider=meter_provider))
    yield tracer_provider, spans, reader
    remove_consumer(exporter)
    meter_provider.shutdown()


def shop():
    app = FastAPI()
    log = sherlock_ai.get_logger("shop")

    @monitor_memory(trace_malloc=False)
    def price(item_id: int) -> float:
        return item_id * 1.5

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        log.info("item %d", item_id)
        return {"item": item_id, "price": price(item_id)}

    @app.get("/fail")
    async def fail():
        raise RuntimeError("boom")

    return app


def serve(app, tracer_provider, paths):
    # sherlock_ai outermost, as instrument_app puts it: OpenTelemetry's middleware ends its
    # server span once the last body message has passed it, before that message reaches the
    # outer layer. Inside, the server span is still open when the measurement ends.
    wrapped = SherlockMiddleware(OpenTelemetryMiddleware(app, tracer_provider=tracer_provider))

    async def traffic():
        transport = httpx.ASGITransport(app=wrapped, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(p) for p in paths]

    return asyncio.run(traffic())


def server_spans(spans):
    return [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]


def test_request_figures_are_attributes_of_the_server_span(otel):
    tracer_provider, spans, _ = otel
    responses = serve(shop(), tracer_provider, ["/items/1", "/items/2", "/fail"])
    (first, second, failed) = server_spans(spans)
    attributes = dict(first.attributes)
    assert attributes["sherlock.memory.name"] == "GET /items/{item_id}"
    assert attributes["sherlock.memory.status"] == "SUCCESS"
    assert attributes["sherlock.request_id"] == responses[0].headers["X-Request-ID"]
    assert attributes["sherlock.memory.rss_bytes"] > 1_000_000
    assert "sherlock.memory.rss_change_bytes" in attributes
    assert 0 < attributes["sherlock.memory.duration_s"] < 60
    assert dict(second.attributes)["sherlock.request_id"] == responses[1].headers["X-Request-ID"]
    assert dict(failed.attributes)["sherlock.memory.status"] == "ERROR"
    # The decorated function inside the request is an event, not the request's attributes.
    (event,) = [e for e in first.events if e.name == "sherlock.memory"]
    assert event.attributes["sherlock.memory.name"].endswith("shop.<locals>.price")


def test_histograms_per_route_and_status_class(otel):
    tracer_provider, _, reader = otel
    serve(shop(), tracer_provider, ["/items/1", "/items/2", "/items/3", "/fail", "/nope"])
    points = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, point.attributes["http.route"],
                           point.attributes["status_class"])
                    points[key] = point.count
    assert points[("sherlock.request.duration", "/items/{item_id}", "2xx")] == 3
    assert points[("sherlock.request.duration", "/fail", "5xx")] == 1
    assert points[("sherlock.request.duration", "<unmatched>", "4xx")] == 1
    assert points[("sherlock.request.rss_growth", "/items/{item_id}", "2xx")] == 3
    assert not [k for k in points if k[0] == "sherlock.request.traced_peak"]  # no tracing


def test_json_log_lines_carry_the_trace_and_span_ids(otel, tmp_path):
    tracer_provider, spans, _ = otel
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, log_format_type="json",
                                                  console_enabled=False))
    logging.getLogger("outside").warning("no span here")
    serve(shop(), tracer_provider, ["/items/7"])
    (span,) = server_spans(spans)
    trace_id = format(span.context.trace_id, "032x")
    records = [json.loads(line) for line in setup.log_files["app"].read_text().splitlines()]
    shop_line = next(r for r in records if r["logger"] == "shop")
    memory_line = next(r for r in records if r.get("name") == "GET /items/{item_id}")
    assert shop_line["trace_id"] == trace_id == memory_line["trace_id"]
    assert len(shop_line["span_id"]) == 16
    outside = next(r for r in records if r["logger"] == "outside")
    assert "trace_id" not in outside and "span_id" not in outside


def test_bad_settings_fail_at_set_up():
    with pytest.raises(TypeError, match="metrics must be True or False"):
        OpenTelemetryExporter(metrics="yes")


@pytest.fixture
def two_server_spans():
    """OpenTelemetry's ASGI middleware around a FastAPI app whose own telemetry opens a
    second server span inside it (FastAPI versions with native telemetry)."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    exporter = add_consumer(OpenTelemetryExporter(tracer_provider=tracer_provider, metrics=False))
    yield tracer_provider, spans
    remove_consumer(exporter)


def fastapi_with_its_own_span(tracer_provider):
    app = FastAPI(telemetry={"tracer_provider": tracer_provider, "metrics": False,
                             "logs": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item": item_id}

    return app


def get_items(served, count=2):
    async def traffic():
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(f"/items/{n}") for n in range(count)]

    return asyncio.run(traffic())


def test_request_attributes_go_on_the_outermost_server_span(two_server_spans):
    tracer_provider, spans = two_server_spans
    app = fastapi_with_its_own_span(tracer_provider)
    served = SherlockMiddleware(OpenTelemetryMiddleware(app, tracer_provider=tracer_provider))
    responses = get_items(served)
    servers = server_spans(spans)
    inner = [s for s in servers if s.instrumentation_scope.name == "fastapi"]
    assert len(servers) == 4 and len(inner) == 2, "FastAPI opens a server span of its own"
    for response in responses:
        request_id = response.headers["X-Request-ID"]
        (outer,) = [s for s in servers if s.attributes.get("sherlock.request_id") == request_id]
        assert outer.instrumentation_scope.name == "opentelemetry.instrumentation.asgi"
        assert outer.attributes["sherlock.memory.name"] == "GET /items/{item_id}"
    assert not [k for s in inner for k in s.attributes if k.startswith("sherlock.")]


def test_fastapis_own_server_span_gets_them_when_it_is_the_only_one(two_server_spans):
    tracer_provider, spans = two_server_spans
    responses = get_items(SherlockMiddleware(fastapi_with_its_own_span(tracer_provider)))
    servers = server_spans(spans)
    assert [s.instrumentation_scope.name for s in servers] == ["fastapi", "fastapi"]
    assert [s.attributes["sherlock.request_id"] for s in servers] == [
        r.headers["X-Request-ID"] for r in responses]
