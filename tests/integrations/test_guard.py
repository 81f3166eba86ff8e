"""The memory guard in process, with the real frameworks: budget lines for ASGI (Starlette),
plain WSGI and Flask, the RSS limit's log action, the Prometheus counters, and bad options
refused at set-up by every integration."""

from __future__ import annotations

import logging
import mmap

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from sherlock_ai.consumers import add_consumer, remove_consumer
from sherlock_ai.engine.rss import current_rss
from sherlock_ai.exporters.prometheus import PrometheusExporter
from sherlock_ai.guard import MemoryGuard
from sherlock_ai.integrations.asgi import SherlockMiddleware, instrument_app
from sherlock_ai.integrations.flask import Sherlock
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware

from .support import get

MB = 1 << 20
_kept: list = []


def touched(size: int) -> mmap.mmap:
    """``size`` bytes of anonymous memory, every page written: RSS grows by that much."""
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    return block


@pytest.fixture(autouse=True)
def release():
    yield
    while _kept:
        _kept.pop().close()


def keep(size: int) -> str:
    _kept.append(touched(size))
    return "kept"


def starlette_app(**options):
    async def big(request):
        return PlainTextResponse(keep(24 * MB))

    async def small(request):
        return PlainTextResponse("small")

    async def free(request):
        while _kept:
            _kept.pop().close()
        return PlainTextResponse("freed")

    app = Starlette(routes=[Route("/export", big, methods=["GET", "POST"]),
                            Route("/small", small), Route("/free", free)])
    return instrument_app(app, **options)


def flask_app(**options):
    app = Flask(__name__)
    app.add_url_rule("/export/<int:n>", "big", lambda n: keep(24 * MB))
    app.add_url_rule("/small", "small", lambda: "small")
    Sherlock(app, **options)
    return app


def plain_wsgi(environ, start_response):
    if environ["PATH_INFO"] == "/export":
        keep(24 * MB)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


def budget_records(records):
    return [r for r in records.named("MonitoringLogger")
            if r.getMessage().startswith("MEMORY BUDGET | ")]


def memory_of(records, name):
    found = [r for r in records.memory() if r.getMessage().startswith(f"MEMORY | {name} |")]
    return found[-1].sherlock  # the latest request of that name


def check_one_warning(records, name, budget):
    [warning] = budget_records(records)
    assert warning.levelno == logging.WARNING
    m = memory_of(records, name)
    event = warning.sherlock
    assert (event.name, event.budget, event.measured, event.measure) == (
        name, budget, m.rss_change, "rss_change")
    assert m.rss_change > 20 * MB
    assert warning.getMessage().startswith(f"MEMORY BUDGET | {name} | +")
    assert warning.getMessage().endswith(" > 10.00MB | RSS change")
    assert warning.request_id == memory_of(records, name).request_id


def test_asgi_a_request_over_its_budget_gets_one_warning(root_records):
    app = starlette_app(memory_budget="10MB")
    assert get(app, "/small").status_code == 200
    assert budget_records(root_records) == []
    assert get(app, "/export").status_code == 200
    check_one_warning(root_records, "GET /export", 10 * MB)


def test_wsgi_a_request_over_its_budget_gets_one_warning(root_records):
    from werkzeug.test import Client

    client = Client(SherlockWSGIMiddleware(plain_wsgi, memory_budget=10 * MB))
    client.get("/small").close()
    assert budget_records(root_records) == []
    response = client.get("/export")
    assert response.status_code == 200 and response.get_data() == b"done"
    check_one_warning(root_records, "GET <unmatched>", 10 * MB)


def test_flask_a_request_over_its_budget_gets_one_warning(root_records):
    client = flask_app(memory_budget="10MB").test_client()
    assert client.get("/small").status_code == 200
    assert budget_records(root_records) == []
    assert client.get("/export/3").data == b"kept"
    check_one_warning(root_records, "GET /export/<int:n>", 10 * MB)


def test_budgets_per_route_apply_to_those_routes_only(root_records):
    app = starlette_app(memory_budget={"POST /export": "10MB", "/small": "1MB"})
    assert get(app, "/export").status_code == 200  # GET: no budget for it
    assert budget_records(root_records) == []
    assert get(app, "/small").status_code == 200
    assert budget_records(root_records) == []


def test_with_tracing_the_budget_is_the_traced_peak(root_records):
    async def build(request):
        rows = [bytes(1000) for _ in range(20_000)]  # about 20 MB of Python objects, freed
        return PlainTextResponse(str(len(rows)))

    app = instrument_app(Starlette(routes=[Route("/build", build)]), memory_budget="5MB",
                         trace_malloc=True)
    assert get(app, "/build").status_code == 200
    [warning] = budget_records(root_records)
    m = memory_of(root_records, "GET /build")
    assert warning.sherlock.measure == "traced_peak"
    assert warning.sherlock.measured == m.traced_peak > 19 * MB
    assert warning.getMessage().endswith(" > 5.00MB | Traced peak")


def test_fast_successes_below_min_duration_are_still_checked(root_records):
    app = starlette_app(memory_budget="10MB", min_duration=60.0)
    assert get(app, "/export").status_code == 200
    assert root_records.memory() == []  # not logged: faster than a minute
    [warning] = budget_records(root_records)
    assert warning.sherlock.measured > 20 * MB


def test_the_log_action_warns_once_per_crossing_and_once_back_under(root_records):
    limit = current_rss() + 40 * MB
    app = starlette_app(rss_limit=limit)
    for _ in range(4):  # 96 MB kept: over the limit from the second request on
        assert get(app, "/export").status_code == 200
    assert get(app, "/small").status_code == 200
    assert get(app, "/free").status_code == 200
    assert get(app, "/small").status_code == 200
    lines = [r for r in root_records.named("MonitoringLogger")
             if r.getMessage().startswith("MEMORY LIMIT |")]
    assert [(r.levelname, r.sherlock.state) for r in lines] == [
        ("WARNING", "crossed"), ("INFO", "back_under")]
    crossed = lines[0].getMessage()
    assert "| action: log | grew most: GET /export +" in crossed
    assert lines[0].sherlock.grew_most[0]["route"] == "GET /export"
    assert lines[0].sherlock.rss > limit > lines[1].sherlock.rss


def test_prometheus_counts_budget_warnings_per_route():
    registry = CollectorRegistry()
    exporter = add_consumer(PrometheusExporter(registry))
    try:
        app = starlette_app(memory_budget="10MB")
        get(app, "/export")
        get(app, "/export")
        get(app, "/small")
    finally:
        remove_consumer(exporter)
    value = registry.get_sample_value
    assert value("sherlock_memory_budget_exceeded_total",
                 {"method": "GET", "route": "/export"}) == 2
    assert value("sherlock_memory_budget_exceeded_total",
                 {"method": "GET", "route": "/small"}) is None


def test_prometheus_counts_shed_requests_per_route(root_records):
    registry = CollectorRegistry()
    exporter = add_consumer(PrometheusExporter(registry))
    try:
        app = starlette_app(rss_limit=current_rss() + 20 * MB, on_rss_limit="shed",
                            exclude_paths=["/free"])
        statuses = [get(app, "/export").status_code for _ in range(3)]
        assert statuses == [200, 503, 503]
        assert get(app, "/small").status_code == 503
    finally:
        remove_consumer(exporter)
    value = registry.get_sample_value
    assert value("sherlock_requests_shed_total", {"method": "GET", "route": "/export"}) == 2
    assert value("sherlock_requests_shed_total", {"method": "GET", "route": "/small"}) == 1


def test_flask_shed_requests_are_counted_by_their_rule():
    registry = CollectorRegistry()
    exporter = add_consumer(PrometheusExporter(registry))
    try:
        client = flask_app(rss_limit=current_rss() + 20 * MB, on_rss_limit="shed").test_client()
        assert [client.get("/export/1").status_code for _ in range(3)] == [200, 503, 503]
    finally:
        remove_consumer(exporter)
    assert registry.get_sample_value("sherlock_requests_shed_total", {
        "method": "GET", "route": "/export/<int:n>"}) == 2


def _set_ups():
    def starlette(**o):
        return SherlockMiddleware(Starlette(), **o)

    def instrumented(**o):
        return instrument_app(Starlette(), **o)

    def wsgi(**o):
        return SherlockWSGIMiddleware(plain_wsgi, **o)

    def flask(**o):
        return Sherlock(Flask(__name__), **o)

    return [starlette, instrumented, wsgi, flask]


@pytest.mark.parametrize("set_up", _set_ups(), ids=["asgi", "instrument_app", "wsgi", "flask"])
@pytest.mark.parametrize("options, error", [
    ({"memory_budget": "50 parsecs"}, "memory_budget must be bytes as an int, or a string"),
    ({"memory_budget": {"export": "1MB"}}, "memory_budget keys must be route templates"),
    ({"rss_limit": "180%"}, r"rss_limit as a share must be a percentage in \(0%, 100%\]"),
    ({"rss_limit": -1}, "rss_limit must be more than 0 bytes"),
    ({"on_rss_limit": "shed"}, "on_rss_limit='shed' needs rss_limit"),
    ({"rss_limit": "1GB", "on_rss_limit": "kill"}, "on_rss_limit must be one of 'log', 'shed'"),
])
def test_bad_options_fail_at_set_up_with_a_message(set_up, options, error):
    with pytest.raises((TypeError, ValueError), match=error):
        set_up(**options)


def test_a_share_is_turned_into_bytes_once_at_set_up():
    from sherlock_ai.guard import Share, memory_limit

    guard = MemoryGuard(rss_limit=Share(0.5))
    assert guard.limit == memory_limit().bytes // 2
    assert guard.limit_source.startswith("50% of ")
