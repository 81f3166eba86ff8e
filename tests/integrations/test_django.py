"""The Django integration in process: Django's test Client and AsyncClient against the test
project (tests/support/django_project), no server."""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import textwrap
import threading
from collections import Counter

import pytest

import sherlock_ai

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

MIDDLEWARE_PATH = "sherlock_ai.integrations.django.SherlockMiddleware"

if not settings.configured:
    settings.configure(
        DEBUG=False, SECRET_KEY="tests-only", ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="django_project.urls",
        INSTALLED_APPS=["sherlock_ai.integrations.django"],
        MIDDLEWARE=[MIDDLEWARE_PATH, "django.middleware.common.CommonMiddleware"],
        DATABASES={}, USE_TZ=True,
        # The pytest process keeps its logging: Django applies no LOGGING, sherlock_ai sets up
        # no file; the records fixtures collect the lines.
        LOGGING_CONFIG=None, SHERLOCK_AI={"configure_logging": False},
        REST_FRAMEWORK={"DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
                        "UNAUTHENTICATED_USER": None, "DEFAULT_AUTHENTICATION_CLASSES": [],
                        "DEFAULT_PERMISSION_CLASSES": []},
    )
    django.setup()

from django.test import AsyncClient, Client, override_settings  # noqa: E402

from sherlock_ai.consumers import Consumer, add_consumer, remove_consumer  # noqa: E402
from sherlock_ai.integrations.django.conf import read_settings  # noqa: E402


def client() -> Client:
    return Client(raise_request_exception=False)


def only_memory(records, request_id):
    (record,) = [r for r in records.memory() if r.sherlock.request_id == request_id]
    return record.sherlock


# -- ids ---------------------------------------------------------------------------------------


def test_each_request_gets_an_id_echoed_and_carried_by_its_lines(records, root_records):
    responses = [client().get(f"/items/{n}/") for n in range(3)]
    ids = [r.headers["X-Request-ID"] for r in responses]
    assert all(sherlock_ai.is_valid_request_id(i) for i in ids) and len(set(ids)) == 3
    assert [r.json()["request_id"] for r in responses] == ids  # request.META, for the view
    served = [r for r in root_records.records if r.name == "shop"]
    assert [(r.getMessage(), r.request_id) for r in served] == [
        (f"serving item {n}", ids[n]) for n in range(3)]
    assert [only_memory(records, i).name for i in ids] == ["GET /items/<int:pk>/"] * 3
    assert not sherlock_ai.get_request_id()  # nothing left behind


def test_an_incoming_id_is_replaced_unless_trusted(records):
    sent = {"HTTP_X_REQUEST_ID": "from-the-client"}
    assert client().get("/items/1/", **sent).headers["X-Request-ID"] != "from-the-client"
    with override_settings(SHERLOCK_AI={"configure_logging": False,
                                        "trust_incoming_id": True}):
        trusted = client().get("/items/1/", **sent)
    assert trusted.headers["X-Request-ID"] == "from-the-client"
    assert only_memory(records, "from-the-client").status == "SUCCESS"


def test_excluded_paths_get_an_id_and_no_line(records):
    with override_settings(SHERLOCK_AI={"configure_logging": False,
                                        "exclude_paths": ["/items/"]}):
        excluded = client().get("/items/2/")
        measured = client().get("/archive/2024/")
    assert sherlock_ai.is_valid_request_id(excluded.headers["X-Request-ID"])
    assert [r.sherlock.name for r in records.memory()] == ["GET /archive/(?P<year>[0-9]{4})/$"]
    assert records.memory()[0].sherlock.request_id == measured.headers["X-Request-ID"]


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path,name,status", [
    ("/items/5/", "GET /items/<int:pk>/", 200),  # inside include() with an empty prefix
    ("/api/v1/items/5/", "GET /api/v1/items/<int:pk>/", 200),  # include() prefixes joined
    ("/archive/2024/", "GET /archive/(?P<year>[0-9]{4})/$", 200),  # re_path: its pattern
    ("/no/such/page/", "GET <unmatched>", 404),  # no pattern matched
    ("/missing/", "GET /missing/", 404),  # a view's own 404 keeps its pattern
    ("/shelf/c/", "GET /shelf/c/", 200),
])
def test_requests_are_named_by_their_url_pattern(records, path, name, status):
    response = client().get(path)
    assert response.status_code == status
    m = only_memory(records, response.headers["X-Request-ID"])
    assert (m.name, m.status, m.attributes["status_code"]) == (name, "SUCCESS", status)
    assert m.attributes["route"] == name.split(" ", 1)[1] and m.attributes["method"] == "GET"


def test_other_methods_are_named_by_theirs(records):
    response = client().post("/items/9/")
    assert only_memory(records, response.headers["X-Request-ID"]).name == \
        "POST /items/<int:pk>/"


def test_a_rest_framework_viewset_is_named_by_its_router_pattern(records):
    pytest.importorskip("rest_framework", reason="Django REST framework is not installed")
    listed, one = client().get("/drf/products/"), client().get("/drf/products/7/")
    assert one.json() == {"id": "7"}
    assert only_memory(records, listed.headers["X-Request-ID"]).name == "GET /drf/products/$"
    assert only_memory(records, one.headers["X-Request-ID"]).name == \
        "GET /drf/products/(?P<pk>[^/.]+)/$"


# -- failures ----------------------------------------------------------------------------------


def test_a_500_carries_the_id_and_its_line_names_the_exception(records, root_records):
    response = client().get("/fail/")
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    m = only_memory(records, request_id)
    assert (m.name, m.status, m.attributes["status_code"]) == ("GET /fail/", "ERROR", 500)
    assert m.error == "HTTP 500 (ZeroDivisionError: division by zero)"
    (logged,) = [r for r in root_records.records if r.name == "django.request"]
    assert logged.getMessage() == "Internal Server Error: /fail/"
    assert logged.request_id == request_id  # logged inside the middleware


def test_the_test_client_still_raises_the_view_exception_by_default(records):
    with pytest.raises(ZeroDivisionError):
        Client().get("/fail/")
    (m,) = [r.sherlock for r in records.memory()]
    assert m.error == "HTTP 500 (ZeroDivisionError: division by zero)"


# -- streamed responses ------------------------------------------------------------------------


def test_a_streamed_response_is_measured_until_its_last_chunk(records, root_records):
    response = client().get("/stream/")
    request_id = response.headers["X-Request-ID"]
    assert records.memory() == []  # nothing sent yet
    assert b"".join(response.streaming_content) == b"x" * 5000
    m = only_memory(records, request_id)
    assert (m.name, m.status) == ("GET /stream/", "SUCCESS")
    assert m.duration >= 5 * 0.02  # the view's five chunks, 20 ms each
    chunks = [r for r in root_records.records if r.name == "shop"]
    assert [(r.getMessage(), r.request_id) for r in chunks] == [
        (f"chunk {n}", request_id) for n in range(5)]


def test_a_stream_that_fails_is_an_error_named_by_its_exception(records):
    response = client().get("/stream-fails/")
    with pytest.raises(RuntimeError):
        b"".join(response.streaming_content)
    m = only_memory(records, response.headers["X-Request-ID"])
    assert (m.status, m.error) == ("ERROR", "RuntimeError: lost the data source")


def test_a_file_response_is_measured_until_closed(records):
    response = client().get("/file/")
    assert records.memory() == []
    assert len(b"".join(response.streaming_content)) == 100_000
    assert only_memory(records, response.headers["X-Request-ID"]).status == "SUCCESS"


def test_a_file_response_keeps_its_file_for_the_servers_file_path(records, tmp_path):
    # What Django's WSGI handler hands to wsgi.file_wrapper (sendfile): the response's file.
    from django.http import FileResponse
    from django.test import RequestFactory

    from sherlock_ai.integrations.django import SherlockMiddleware

    (tmp_path / "data.bin").write_bytes(b"d" * 1000)
    handle = open(tmp_path / "data.bin", "rb")  # noqa: SIM115 - the response closes it
    middleware = SherlockMiddleware(lambda request: FileResponse(handle))
    response = middleware(RequestFactory().get("/file/"))
    assert response.file_to_stream is handle
    assert records.memory() == []
    response.close()
    assert handle.closed
    (record,) = records.memory()
    assert record.sherlock.request_id == response.headers["X-Request-ID"]


def test_a_stream_nobody_reads_ends_when_collected(records):
    request_id = client().get("/stream/").headers["X-Request-ID"]  # the response is dropped
    gc.collect()
    from sherlock_ai.integrations.collected import wait_for_collected

    assert wait_for_collected()
    m = only_memory(records, request_id)
    assert m.status == "ERROR" and "never closed" in m.error


# -- async -------------------------------------------------------------------------------------


def test_async_client_ids_names_and_streams(records, root_records):
    async def run():
        async_client = AsyncClient()
        item = await async_client.get("/async/4/")
        sync_view = await async_client.get("/items/4/")  # a sync view, run in a thread
        streamed = await async_client.get("/async-stream/")
        body = b"".join([chunk async for chunk in streamed.streaming_content])
        return item, sync_view, streamed, body

    item, sync_view, streamed, body = asyncio.run(run())
    assert body == b"y" * 3000
    ids = [r.headers["X-Request-ID"] for r in (item, sync_view, streamed)]
    assert [only_memory(records, i).name for i in ids] == [
        "GET /async/<int:pk>/", "GET /items/<int:pk>/", "GET /async-stream/"]
    assert only_memory(records, ids[2]).duration >= 3 * 0.01
    logged = [(r.getMessage(), r.request_id) for r in root_records.records if r.name == "shop"]
    assert logged == [("async item 4", ids[0]), ("serving item 4", ids[1])] + [
        (f"async chunk {n}", ids[2]) for n in range(3)]


def test_async_client_500_carries_the_id_and_names_the_exception(records):
    response = asyncio.run(AsyncClient(raise_request_exception=False).get("/fail/"))
    assert response.status_code == 500
    assert only_memory(records, response.headers["X-Request-ID"]).error == \
        "HTTP 500 (ZeroDivisionError: division by zero)"


# -- memory guard and exporters ----------------------------------------------------------------


def sherlock_settings(**options):
    return override_settings(SHERLOCK_AI={"configure_logging": False, **options})


def test_a_request_over_its_budget_gets_one_warning_named_by_its_pattern(records):
    from django_project import views

    with sherlock_settings(memory_budget={"/export/": "10MB"}):
        small = client().get("/items/1/")
        big = client().get("/export/")
    views.KEPT.clear()
    assert small.status_code == big.status_code == 200
    (warning,) = [r for r in records.named("MonitoringLogger")
                  if r.getMessage().startswith("MEMORY BUDGET | ")]
    assert warning.getMessage().startswith("MEMORY BUDGET | GET /export/ | +")
    assert warning.request_id == big.headers["X-Request-ID"]


def test_shed_requests_get_a_503_with_their_id_and_count_by_pattern(records):
    from prometheus_client import CollectorRegistry

    from django_project import views
    from sherlock_ai.engine.rss import current_rss
    from sherlock_ai.exporters.prometheus import PrometheusExporter

    registry = CollectorRegistry()
    exporter = sherlock_ai.add_consumer(PrometheusExporter(registry))
    try:
        with sherlock_settings(rss_limit=current_rss() + 20 * 1024 * 1024,
                               on_rss_limit="shed"):
            responses = [client().get("/export/") for _ in range(3)]
    finally:
        sherlock_ai.remove_consumer(exporter)
        views.KEPT.clear()
    assert [r.status_code for r in responses] == [200, 503, 503]
    shed = responses[-1]
    assert sherlock_ai.is_valid_request_id(shed.headers["X-Request-ID"])
    assert shed.headers["Retry-After"] and b"over its memory limit" in shed.content
    assert registry.get_sample_value("sherlock_requests_shed_total",
                                     {"method": "GET", "route": "/export/"}) == 2


def test_prometheus_histograms_are_labelled_by_pattern():
    from prometheus_client import CollectorRegistry

    from sherlock_ai.exporters.prometheus import PrometheusExporter

    registry = CollectorRegistry()
    exporter = sherlock_ai.add_consumer(PrometheusExporter(registry))
    try:
        for n in range(3):
            client().get(f"/items/{n}/")
        client().get("/fail/")
    finally:
        sherlock_ai.remove_consumer(exporter)
    count = registry.get_sample_value
    assert count("sherlock_request_duration_seconds_count", {
        "method": "GET", "route": "/items/<int:pk>/", "status_class": "2xx"}) == 3
    assert count("sherlock_request_duration_seconds_count", {
        "method": "GET", "route": "/fail/", "status_class": "5xx"}) == 1


def test_opentelemetry_span_attributes_and_histograms_by_pattern():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from sherlock_ai.exporters.opentelemetry import OpenTelemetryExporter

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    exporter = sherlock_ai.add_consumer(OpenTelemetryExporter(meter_provider=meter_provider))
    tracer = tracer_provider.get_tracer("tests")
    try:
        # The server span a Django instrumentation would open around the request.
        with tracer.start_as_current_span("GET", kind=SpanKind.SERVER):
            response = client().get("/items/3/")
        client().get("/fail/")
    finally:
        sherlock_ai.remove_consumer(exporter)
        meter_provider.shutdown()
    (span,) = spans.get_finished_spans()
    assert span.attributes["sherlock.memory.name"] == "GET /items/<int:pk>/"
    assert span.attributes["sherlock.request_id"] == response.headers["X-Request-ID"]
    counts = {(metric.name, point.attributes["http.route"], point.attributes["status_class"]):
              point.count
              for resource in reader.get_metrics_data().resource_metrics
              for scope in resource.scope_metrics for metric in scope.metrics
              for point in metric.data.data_points}
    assert counts[("sherlock.request.duration", "/items/<int:pk>/", "2xx")] == 1
    assert counts[("sherlock.request.duration", "/fail/", "5xx")] == 1


# -- threads -----------------------------------------------------------------------------------


def test_concurrent_threads_never_see_each_others_ids(records, root_records):
    results = {}

    def serve(worker: int) -> None:
        own = client()
        for n in range(worker * 100, worker * 100 + 10):
            results[n] = own.get(f"/slow/{n}/").headers["X-Request-ID"]

    threads = [threading.Thread(target=serve, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 80 and len(set(results.values())) == 80
    served = {int(r.getMessage().split()[-1]): r.request_id for r in root_records.records
              if r.name == "shop"}
    assert served == results
    per_id = Counter(r.sherlock.request_id for r in records.memory())
    assert set(per_id) == set(results.values()) and set(per_id.values()) == {1}
    assert {r.sherlock.name for r in records.memory()} == {"GET /slow/<int:pk>/"}


def test_concurrent_async_requests_never_see_each_others_ids(records, root_records):
    async def run():
        async_client = AsyncClient()
        paths = [f"/async/{n}/" if n % 2 else f"/items/{n}/" for n in range(40)]
        responses = await asyncio.gather(*(async_client.get(path) for path in paths))
        return {n: r.headers["X-Request-ID"] for n, r in enumerate(responses)}

    ids = asyncio.run(run())
    assert len(set(ids.values())) == 40
    logged = {int(r.getMessage().split()[-1]): r.request_id for r in root_records.records
              if r.name == "shop"}
    assert logged == ids
    assert {r.sherlock.request_id for r in records.memory()} == set(ids.values())


# -- settings ----------------------------------------------------------------------------------


def test_settings_take_request_options_and_logging_fields_under_their_names(tmp_path):
    checked = read_settings({"leak_detection": True, "memory_budget": "50MB",
                             "logs_dir": tmp_path, "log_format_type": "json",
                             "log_files": {"app": {"enabled": False}}})
    assert checked.options.leak_detection and checked.options.memory_budget == 50 * 1024 ** 2
    assert checked.logging.log_format_type == "json" and checked.logging.logs_dir == tmp_path
    assert not checked.logging.log_files["app"].enabled
    assert checked.logging.log_files["monitoring"].loggers == ("MonitoringLogger",)
    assert read_settings({"configure_logging": False}).logging is None


@pytest.mark.parametrize("value,message", [
    ({"leak_detect": True}, "unknown key 'leak_detect' (did you mean 'leak_detection'?)"),
    ({"memory_budget": "lots"}, "settings.SHERLOCK_AI: memory_budget"),
    ({"log_format_type": "xml"}, "log_format_type must be 'log' or 'json'"),
    ({"console_level": "LOUD"}, "settings.SHERLOCK_AI: "),
    (["leak_detection"], "settings.SHERLOCK_AI must be a dict, for example SHERLOCK_AI = {"),
    ({"configure_logging": False, "logs_dir": "x"},
     "sets logs_dir and 'configure_logging': False"),
    ({"log_files": {"app": {"size": 1}}}, "log_files['app'] has unknown field(s) size"),
])
def test_a_wrong_setting_says_what_to_write(value, message):
    with pytest.raises(ImproperlyConfigured) as raised:
        read_settings(value)
    assert message in str(raised.value)


def test_a_wrong_setting_fails_at_start_up_through_django():
    with pytest.raises(ImproperlyConfigured, match="unknown key 'trace_maloc'"), \
            override_settings(SHERLOCK_AI={"trace_maloc": True}):
        pass  # pragma: no cover - the override itself raises


def test_the_system_checks_want_the_middleware_first():
    from django.core import checks

    def warnings():
        return [m.id for m in checks.run_checks() if m.id.startswith("sherlock_ai.")]

    assert warnings() == []
    with override_settings(MIDDLEWARE=["django.middleware.common.CommonMiddleware",
                                       MIDDLEWARE_PATH]):
        assert warnings() == ["sherlock_ai.W002"]
    with override_settings(MIDDLEWARE=["django.middleware.common.CommonMiddleware"]):
        assert warnings() == ["sherlock_ai.W001"]


def test_the_middleware_without_the_app_says_to_install_it():
    from django.apps import apps

    from sherlock_ai.integrations.django import SherlockMiddleware

    apps.set_installed_apps([])
    try:
        with pytest.raises(ImproperlyConfigured, match='needs "sherlock_ai.integrations.django" '
                                                       "in INSTALLED_APPS"):
            SherlockMiddleware(lambda request: None)
    finally:
        apps.unset_installed_apps()


@pytest.mark.servers
def test_the_package_and_its_log_filter_import_no_django():
    code = ("import sys, sherlock_ai.integrations.django as app\n"
            "assert app.RequestIdFilter is not None\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# -- the documented settings -------------------------------------------------------------------


def documented_django_blocks():
    from web_support import ROOT

    doc = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")
    section = doc[doc.index("\n## Django\n"):doc.index("\n## Any WSGI app\n")]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme_block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S)
                        if "SHERLOCK_AI" in b)
    return re.findall(r"```python\n(.*?)```", section, re.S), readme_block


@pytest.mark.servers
def test_the_documented_settings_are_accepted(tmp_path):
    (settings_block, logging_block), readme_block = documented_django_blocks()
    for block in (settings_block, readme_block):
        namespace = {"__file__": str(tmp_path / "settings.py")}
        exec(block, namespace)  # assignments only
        assert MIDDLEWARE_PATH in namespace["MIDDLEWARE"][0]
        assert "sherlock_ai.integrations.django" in namespace["INSTALLED_APPS"]
        read_settings(namespace["SHERLOCK_AI"])
    # The LOGGING recipe, applied in a process of its own (it disables existing loggers): a
    # line of django.request logged outside any request shows the id of its request.
    probe = logging_block + textwrap.dedent("""
        import logging.config
        logging.config.dictConfig(LOGGING)

        class Request:
            META = {"sherlock_ai.request_id": "documented-1"}

        logging.getLogger("django.request").warning("Not Found: /x", extra={"request": Request()})
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert " - documented-1 - django.request - WARNING - Not Found: /x" in result.stderr


def test_consumers_see_the_connection_each_request_came_on():
    # From META: REMOTE_ADDR and REMOTE_PORT, as a WSGI server (gunicorn) gives them, or as
    # Django's ASGI handler makes them from the scope's client; none without a port.
    seen = []

    class Recorder(Consumer):
        def request_started(self, request):
            seen.append(request.connection)

    async def over_asgi():
        await AsyncClient().get("/items/2/")

    recorder = add_consumer(Recorder())
    try:
        client().get("/items/1/", REMOTE_ADDR="10.0.0.7", REMOTE_PORT="51234")
        asyncio.run(over_asgi())
        client().get("/items/3/")
    finally:
        remove_consumer(recorder)
    assert seen == [("10.0.0.7", "51234"), ("127.0.0.1", 0), None]
