"""The memory guard in process, with the real frameworks: budget lines for ASGI (Starlette),
plain WSGI and Flask, the RSS limit's log action, the Prometheus counters, and bad options
refused at set-up by every integration."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from resident import touched
from sherlock_ai.consumers import add_consumer, remove_consumer
from sherlock_ai.engine.rss import current_rss
from sherlock_ai.exporters.prometheus import PrometheusExporter
from sherlock_ai.guard import MemoryGuard
from sherlock_ai.integrations.asgi import SherlockMiddleware, instrument_app
from sherlock_ai.integrations.flask import Sherlock
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware
from web_support import get

MB = 1 << 20
_kept: list = []


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
    assert (event.name, event.budget, event.measure) == (name, budget, "rss_peak")
    # The memory was kept: its peak is its change, give or take the framework's scratch.
    assert m.rss_change > 20 * MB
    assert m.rss_change <= event.measured <= m.rss_change + 2 * MB
    assert warning.getMessage().startswith(f"MEMORY BUDGET | {name} | +")
    assert warning.getMessage().endswith(" > 10.00MB | RSS peak")
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


def build_and_free(size: int) -> str:
    block = touched(size)
    block.close()  # unmapped: RSS falls back before the request ends
    return "freed"


@pytest.mark.parametrize("serve", ["asgi", "flask"])
def test_a_request_that_builds_and_frees_memory_is_over_its_budget(root_records, serve):
    if serve == "asgi":
        async def build(request):
            return PlainTextResponse(build_and_free(60 * MB))

        app = instrument_app(Starlette(routes=[Route("/build", build)]), memory_budget="20MB")
        assert get(app, "/build").status_code == 200
    else:
        flask = Flask(__name__)
        flask.add_url_rule("/build", "build", lambda: build_and_free(60 * MB))
        Sherlock(flask, memory_budget="20MB")
        assert flask.test_client().get("/build").status_code == 200
    m = memory_of(root_records, "GET /build")
    assert m.rss_change < 2 * MB  # Change: nothing left at the end
    [warning] = budget_records(root_records)
    assert warning.sherlock.measure == "rss_peak"
    assert 58 * MB <= warning.sherlock.measured <= 64 * MB
    assert warning.getMessage().endswith(" > 20.00MB | RSS peak")


def test_python_objects_built_and_freed_count_too(root_records):
    async def build(request):
        rows = [str(i) * 30 for i in range(300_000)]  # about 60 MB of str objects, freed
        return PlainTextResponse(str(len(rows)))

    app = instrument_app(Starlette(routes=[Route("/build", build)]), memory_budget="20MB")
    assert get(app, "/build").status_code == 200
    [warning] = budget_records(root_records)
    assert warning.sherlock.measured > 40 * MB > memory_of(root_records, "GET /build").rss_change


def test_overlapping_windows_each_see_their_own_peak():
    from sherlock_ai.guard.peak import windows

    early = windows.open()
    start = current_rss()
    build_and_free(40 * MB)  # the peak of the early window only
    late = windows.open()  # resets the process's mark: the early window keeps what it saw
    assert windows.close(early) >= start + 39 * MB
    assert windows.close(late) < start + 8 * MB


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


def _limit_lines(records):
    return [r for r in records.named("MonitoringLogger")
            if r.getMessage().startswith("MEMORY LIMIT |")]


def test_shedding_that_lasts_fails_the_health_check_where_nothing_replaces_the_worker(
        root_records):
    app = starlette_app(rss_limit=current_rss() + 20 * MB, on_rss_limit="shed",
                        shed_timeout=0.3, exclude_paths=["/health"])
    assert [get(app, "/export").status_code for _ in range(2)] == [200, 503]
    assert get(app, "/health").status_code == 404  # excluded: served (no such route)
    time.sleep(0.35)
    health = get(app, "/health")  # the memory never came back: the health check sees it
    assert health.status_code == 503 and health.headers["Retry-After"] == "5"
    assert get(app, "/small").status_code == 503
    given_up = _limit_lines(root_records)[-1]
    assert given_up.levelname == "WARNING"
    assert given_up.sherlock.as_dict()["excluded_too"] is True
    assert 0 <= given_up.sherlock.shed_for <= 2
    assert given_up.getMessage().endswith(
        f"| 503 with Retry-After: 5 | excluded paths too: still over after "
        f"{given_up.sherlock.shed_for}s of shedding and no server replaces this worker")
    # Back under the limit, everything is served again, the health check first.
    while _kept:
        _kept.pop().close()
    assert get(app, "/health").status_code == 404
    assert get(app, "/small").status_code == 200
    assert _limit_lines(root_records)[-1].sherlock.state == "shed_stopped"


def test_shedding_without_a_timeout_keeps_serving_the_health_check(root_records):
    app = starlette_app(rss_limit=current_rss() + 20 * MB, on_rss_limit="shed",
                        shed_timeout=None, exclude_paths=["/small"])
    assert [get(app, "/export").status_code for _ in range(2)] == [200, 503]
    time.sleep(0.1)
    assert get(app, "/small").status_code == 200


def test_flask_health_check_fails_after_shed_timeout():
    app = flask_app(rss_limit=current_rss() + 20 * MB, on_rss_limit="shed", shed_timeout=0.2,
                    exclude_paths=["/small"])
    client = app.test_client()
    assert [client.get("/export/1").status_code for _ in range(2)] == [200, 503]
    assert client.get("/small").status_code == 200
    time.sleep(0.25)
    assert client.get("/small").status_code == 503


def test_shed_with_a_limit_below_the_start_up_rss_only_logs(root_records):
    app = starlette_app(rss_limit=current_rss() - 4 * MB, on_rss_limit="shed")
    assert get(app, "/small").status_code == 200
    assert get(app, "/small").status_code == 200
    messages = [r.getMessage() for r in root_records.named("MonitoringLogger")]
    assert any("is below this process's RSS at set-up" in m
               and "so on_rss_limit='shed' only logs" in m for m in messages), messages
    assert [r.sherlock.state for r in _limit_lines(root_records)] == ["crossed"]


@pytest.mark.parametrize("value", [0, -1, "60", True, float("nan"), float("inf")])
def test_a_bad_shed_timeout_says_what_is_accepted(value):
    with pytest.raises(ValueError, match=r"shed_timeout must be a number of seconds more than "
                                         r"0 .* or None to shed until RSS is back under"):
        starlette_app(rss_limit="1GB", on_rss_limit="shed", shed_timeout=value)


UNKNOWN_KEYS = "memory_budget names routes this app does not serve: 'POST /imports'"


def start_up(app):
    """Run the app's lifespan (start-up, then shut-down) as a server does: the messages it
    sent back and what it raised."""
    sent, incoming = [], [{"type": "lifespan.shutdown"}, {"type": "lifespan.startup"}]

    async def receive():
        return incoming.pop()

    async def send(message):
        sent.append(message)

    async def run():
        try:
            await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        except Exception as exc:  # noqa: BLE001 - what the server sees
            return sent, exc
        return sent, None

    return asyncio.run(asyncio.wait_for(run(), 10))


def test_budget_keys_that_name_no_route_fail_the_asgi_start_up():
    app = starlette_app(memory_budget={"POST /imports": "20MB", "/small": "1MB"})
    sent, raised = start_up(app)
    # One start-up failure with our message, as uvicorn logs it before it exits; the app's
    # lifespan ends with the error.
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    message = sent[0]["message"]
    assert message.startswith("sherlock_ai memory guard: " + UNKNOWN_KEYS)
    # The message lists the routes the app does serve, as the keys name them.
    assert "its routes are /export (GET, POST); /free (GET); /small (GET) (a key is a route " \
        "template" in message
    assert isinstance(raised, ValueError) and str(raised) == message
    good = starlette_app(memory_budget={"POST /export": "20MB", "/small": "1MB"})
    sent, raised = start_up(good)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete",
                                         "lifespan.shutdown.complete"] and raised is None


def test_a_method_the_route_does_not_serve_is_an_unknown_key_too():
    sent, _ = start_up(starlette_app(memory_budget={"POST /small": "1MB"}))
    assert "does not serve: 'POST /small'" in sent[0]["message"]


def test_without_a_start_up_event_unknown_keys_are_said_once_at_the_first_request(
        root_records):
    app = starlette_app(memory_budget={"POST /imports": "20MB"})  # no lifespan in process
    assert get(app, "/small").status_code == 200
    assert get(app, "/small").status_code == 200
    errors = [r for r in root_records.named("MonitoringLogger") if r.levelname == "ERROR"]
    assert [UNKNOWN_KEYS in r.getMessage() for r in errors] == [True]


def test_flask_unknown_budget_keys_are_said_once_at_the_first_request(root_records):
    app = flask_app(memory_budget={"POST /imports": "20MB", "/export/<int:n>": "1GB"})
    client = app.test_client()
    assert client.get("/small").status_code == 200
    assert client.get("/small").status_code == 200
    [error] = [r for r in root_records.named("MonitoringLogger") if r.levelname == "ERROR"]
    assert UNKNOWN_KEYS + "; its routes are " in error.getMessage()
    assert "its routes are /export/<int:n> (GET); " in error.getMessage()
    assert "'/export/<int:n>'" not in error.getMessage()


def test_a_leaving_worker_answers_every_response_with_connection_close():
    app = SherlockMiddleware(Starlette(routes=[Route("/small", lambda r: PlainTextResponse("s"))]),
                             rss_limit="1TB", exclude_paths=["/health"])
    assert "connection" not in get(app, "/small").headers
    app.policy.guard.watermark.draining = True  # what recycling under uvicorn sets
    for path in ("/small", "/health"):
        response = get(app, path)
        assert response.headers["connection"] == "close", path
        assert "x-request-id" in response.headers
