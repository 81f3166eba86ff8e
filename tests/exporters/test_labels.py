"""The exporters keep each label set's metric children (Prometheus) or attributes
(OpenTelemetry) ready per (method, route, status code): requests of one route with different
codes of one class share a label set, other routes and classes get their own, and past the
cache's bound every request is still counted under its right labels."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sherlock_ai.consumers import add_consumer, remove_consumer
from sherlock_ai.exporters import opentelemetry as otel_module
from sherlock_ai.exporters import prometheus as prometheus_module
from sherlock_ai.integrations.asgi import SherlockMiddleware

# path -> how many requests; /items/{id} answers 200, 201 (id 2) or 503 (id 5).
TRAFFIC = {"/items/1": 3, "/items/2": 2, "/items/5": 4, "/other": 1}
EXPECTED = {("GET", "/items/{item_id}", "2xx"): 5, ("GET", "/items/{item_id}", "5xx"): 4,
            ("GET", "/other", "2xx"): 1}


def app():
    async def item(request):
        code = {"2": 201, "5": 503}.get(request.path_params["item_id"], 200)
        return PlainTextResponse("item", status_code=code)

    async def other(request):
        return PlainTextResponse("other")

    return SherlockMiddleware(Starlette(routes=[Route("/items/{item_id}", item),
                                                Route("/other", other)]))


def send_traffic():
    async def go():
        transport = httpx.ASGITransport(app=app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for path, times in TRAFFIC.items():
                for _ in range(times):
                    await client.get(path)

    asyncio.run(go())


@pytest.mark.parametrize("bound", [4096, 1])
def test_prometheus_counts_each_label_set(monkeypatch, bound):
    monkeypatch.setattr(prometheus_module, "_CHILDREN_CACHE", bound)
    registry = CollectorRegistry()
    exporter = add_consumer(prometheus_module.PrometheusExporter(registry=registry))
    try:
        send_traffic()
    finally:
        remove_consumer(exporter)
    counts = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name in ("sherlock_request_duration_seconds_count",
                               "sherlock_request_rss_growth_bytes_count"):
                labels = (sample.labels["method"], sample.labels["route"],
                          sample.labels["status_class"])
                counts.setdefault(sample.name, {})[labels] = sample.value
    assert counts == {"sherlock_request_duration_seconds_count": EXPECTED,
                      "sherlock_request_rss_growth_bytes_count": EXPECTED}
    assert len(exporter._children) == min(bound, 4)  # (GET, route, code): 200, 201, 503, /other


@pytest.mark.parametrize("bound", [4096, 1])
def test_opentelemetry_counts_each_attribute_set(monkeypatch, bound):
    monkeypatch.setattr(otel_module, "_LABELS_CACHE", bound)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exporter = add_consumer(otel_module.OpenTelemetryExporter(meter_provider=provider,
                                                 span_attributes=False))
    try:
        send_traffic()
    finally:
        remove_consumer(exporter)
    counts = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    a = point.attributes
                    labels = (a["http.request.method"], a["http.route"], a["status_class"])
                    counts.setdefault(metric.name, {})[labels] = point.count
    provider.shutdown()
    assert counts == {"sherlock.request.duration": EXPECTED,
                      "sherlock.request.rss_growth": EXPECTED}
    assert len(exporter._labels) == min(bound, 4)
