"""Prometheus metrics scraped over HTTP from real servers on 127.0.0.1: uvicorn with one
process, gunicorn with two workers in multiprocess mode; and a custom registry in process."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, Tuple

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sherlock_ai.consumers import add_consumer, remove_consumer
from sherlock_ai.exporters.prometheus import (
    PrometheusExporter,
    metrics_asgi_app,
    status_class,
)
from sherlock_ai.integrations.asgi import SherlockMiddleware, instrument_app
from web_support import SUPPORT, server

PROM_SERVER = str(SUPPORT / "prom_server.py")
CART_LEAK_LINE = next(n for n, line in enumerate(Path(PROM_SERVER).read_text().splitlines(), 1)
                      if "RETAINED.append(" in line)


def samples(text: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def by_name(scraped, name: str) -> Dict[Tuple[Tuple[str, str], ...], float]:
    return {labels: value for (n, labels), value in scraped.items() if n == name}


def counts(scraped) -> Dict[Tuple[str, str, str], float]:
    found: Dict[Tuple[str, str, str], float] = defaultdict(float)
    for labels, value in by_name(scraped, "sherlock_request_duration_seconds_count").items():
        d = dict(labels)
        found[(d["method"], d["route"], d["status_class"])] += value
    return dict(found)


@pytest.mark.servers
def test_uvicorn_metrics_count_each_route_and_status_class(tmp_path):
    async def traffic(url: str) -> str:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await asyncio.gather(*(client.get(f"/items/{n}") for n in range(30)))
            for _ in range(4):
                # uvicorn closes a connection whose app raised: don't reuse it.
                failed = await client.get("/fail", headers={"Connection": "close"})
                assert failed.status_code == 500
            for n in range(3):
                assert (await client.get(f"/no/such/{n}")).status_code == 404
            for _ in range(150):
                await client.post("/cart")
            scrape = await client.get("/metrics")  # the documented path answers itself
            assert scrape.status_code == 200
            return scrape.text

    with server(PROM_SERVER, cwd=tmp_path) as app:
        text = asyncio.run(traffic(app.url))
    scraped = samples(text)
    assert counts(scraped) == {
        ("GET", "/items/{item_id}", "2xx"): 30, ("GET", "/fail", "5xx"): 4,
        ("GET", "<unmatched>", "4xx"): 3, ("POST", "/cart", "2xx"): 150,
    }
    assert "/no/such" not in text and "/items/1" not in text
    growth = by_name(scraped, "sherlock_request_rss_growth_bytes_count")
    assert sum(growth.values()) == 187
    assert by_name(scraped, "sherlock_requests_in_progress") == {(): 0.0}
    assert by_name(scraped, "sherlock_process_rss_bytes")[()] > 10_000_000
    suspects = by_name(scraped, "sherlock_leak_suspect_bytes_per_request")
    assert list(suspects) == [(("kind", "python"), ("method", "POST"), ("route", "/cart"),
                               ("site", f"prom_server.py:{CART_LEAK_LINE}"))]
    assert list(suspects.values())[0] == pytest.approx(4129, rel=0.25)


@pytest.mark.servers
def test_gunicorn_workers_add_up_in_multiprocess_mode(tmp_path, monkeypatch):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    argv = ["-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:0", "-c",
            str(SUPPORT / "prom_gunicorn_conf.py"), "--chdir", str(SUPPORT),
            "prom_server:flask_app"]
    pids = set()
    with server(*argv, cwd=tmp_path,
                port_pattern=r"Listening at: http://127\.0\.0\.1:(\d+)") as app:
        for n in range(120):
            # A new connection each time, so that both workers take some.
            response = httpx.get(f"{app.url}/items/{n}", headers={"Connection": "close"})
            pids.add(response.json()["pid"])
        for _ in range(6):
            assert httpx.get(f"{app.url}/fail").status_code == 500
        text = httpx.get(f"{app.url}/metrics").text
    assert len(pids) == 2, "both workers should have served requests"
    scraped = samples(text)
    assert counts(scraped) == {("GET", "/items/<int:item_id>", "2xx"): 120,
                               ("GET", "/fail", "5xx"): 6}
    workers_rss = by_name(scraped, "sherlock_process_rss_bytes")
    assert {dict(labels)["pid"] for labels in workers_rss} == {str(p) for p in pids}


def test_a_custom_registry_keeps_its_own_metrics_and_nothing_else():
    async def hello(request):
        return PlainTextResponse("hi", status_code=201)

    app = SherlockMiddleware(Starlette(routes=[Route("/hello", hello)]))
    mine, other = CollectorRegistry(), CollectorRegistry()
    exporter = add_consumer(PrometheusExporter(registry=mine))
    bystander = PrometheusExporter(registry=other)  # never installed

    async def traffic():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(5):
                await client.get("/hello")

    try:
        asyncio.run(traffic())
    finally:
        remove_consumer(exporter)
    asyncio.run(traffic())  # after uninstall: not counted
    assert counts(samples(generate_latest(mine).decode())) == {("GET", "/hello", "2xx"): 5}
    assert counts(samples(generate_latest(other).decode())) == {}
    assert bystander.registry is other


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
def test_the_documented_route_serves_metrics_at_the_path_itself(framework):
    registry = CollectorRegistry()
    if framework == "fastapi":
        app = FastAPI()
        app.add_route("/metrics", metrics_asgi_app(registry))  # as docs/metrics.md says
    else:
        app = Starlette(routes=[Route("/metrics", metrics_asgi_app(registry))])
    exporter = add_consumer(PrometheusExporter(registry=registry))

    async def scrape():
        transport = httpx.ASGITransport(app=instrument_app(app, exclude_paths=["/metrics"]))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/metrics"), await client.get("/metrics?name[]=x")

    try:
        response, with_query = asyncio.run(scrape())
    finally:
        remove_consumer(exporter)
    assert response.status_code == 200 and with_query.status_code == 200
    assert "sherlock_requests_in_progress 0.0" in response.text
    assert counts(samples(response.text)) == {}  # the excluded scrape is not counted


def test_bad_settings_fail_at_set_up():
    with pytest.raises(TypeError, match="registry must be a prometheus_client CollectorRegistry"):
        PrometheusExporter(registry="default")
    with pytest.raises(ValueError, match="duration_buckets must be increasing"):
        PrometheusExporter(CollectorRegistry(), duration_buckets=[1, 0.5])
    with pytest.raises(TypeError, match="memory_buckets must be a sequence of numbers"):
        PrometheusExporter(CollectorRegistry(), memory_buckets=["big"])


@pytest.mark.parametrize("status, expected", [(200, "2xx"), (404, "4xx"), (503, "5xx"),
                                              (None, "none"), (999, "none")])
def test_status_classes(status, expected):
    assert status_class(status) == expected


def test_no_multiprocess_dir_in_this_process():
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
