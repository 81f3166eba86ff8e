"""The Celery integration's set-up and the runs Celery makes in the calling process (eager
runs: ``task.apply()``); tasks through a broker and real workers are in test_celery.py."""

from __future__ import annotations

import time
from typing import Iterator

import pytest
from celery import Celery
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

import sherlock_ai
from sherlock_ai import request_id_context
from sherlock_ai.engine.measurement import Measurement
from sherlock_ai.exporters.labels import OTHER_TASKS
from sherlock_ai.exporters.opentelemetry import OpenTelemetryExporter
from sherlock_ai.exporters.prometheus import PrometheusExporter
from sherlock_ai.integrations.celery import TaskOptions, instrument_celery


@pytest.fixture
def app() -> Iterator[Celery]:
    celery_app = Celery("eager", broker="memory://", backend="cache+memory://")
    instrumentation = instrument_celery(celery_app)

    @celery_app.task(name="shop.double", shared=False)
    def double(x: int) -> int:
        return 2 * x

    @celery_app.task(name="shop.broken", shared=False)
    def broken() -> None:
        raise ValueError("bad input")

    yield celery_app
    instrumentation.uninstrument()


@pytest.mark.parametrize("name, advice", [
    ("header_name", "the id travels in the message header 'sherlock_ai_request_id'"),
    ("exclude_paths", "a task has no path"),
    ("trust_incoming_id", "an id in a task's message is always used when it is valid"),
])
def test_a_web_only_option_is_refused_with_what_to_do(name, advice):
    with pytest.raises(TypeError, match=f"{name} applies to web requests, not to Celery tasks"
                       ) as raised:
        instrument_celery(Celery("x"), **{name: "X-Id"})
    assert advice in str(raised.value) and "instrument_celery accepts: id_generator" in \
        str(raised.value)


def test_a_misspelt_option_is_refused_with_the_accepted_names():
    with pytest.raises(TypeError, match="unknown option.* leak_detectoin; accepted: "):
        instrument_celery(Celery("x"), leak_detectoin=True)


@pytest.mark.parametrize("options, message", [
    ({"memory_budget": {"/export": "1MB"}}, "memory_budget keys must be task names"),
    ({"memory_budget": {"shop.resize": "lots"}}, "memory_budget"),
    ({"on_rss_limit": "recycle"}, "on_rss_limit='recycle' needs rss_limit"),
    ({"min_duration": -1}, "min_duration must be >= 0"),
    ({"leak_settings": {"trace_share": 0.1}}, "leak_settings only apply with leak_detection"),
])
def test_wrong_values_fail_at_set_up(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        instrument_celery(Celery("x"), **options)


def test_budgets_are_kept_by_run_name():
    options = TaskOptions(memory_budget={"shop.resize": "2MB"})
    assert dict(options.memory_budget) == {"TASK shop.resize": 2 << 20}


def test_instrumenting_an_app_twice_is_refused(app):
    with pytest.raises(RuntimeError, match="already called for this app"):
        instrument_celery(app)


def test_an_eager_run_keeps_the_callers_id_and_is_one_line(app, records):
    with request_id_context("caller-id"):
        assert app.tasks["shop.double"].apply(args=(4,)).get() == 8
    line, = records.memory()
    assert line.getMessage().startswith("MEMORY | TASK shop.double | SUCCESS | ")
    assert line.request_id == "caller-id"
    assert line.sherlock.attributes["task"] == "shop.double"


def test_an_eager_run_outside_a_request_gets_an_id_of_its_own(app, records):
    app.tasks["shop.double"].apply(args=(1,))
    app.tasks["shop.double"].apply(args=(2,))
    first, second = (r.request_id for r in records.memory())
    assert first and second and first != second


def test_min_duration_and_trace_malloc_apply_as_for_requests(records):
    tasks_app = Celery("options", broker="memory://", backend="cache+memory://")
    instrumentation = instrument_celery(tasks_app, min_duration=0.5, trace_malloc=True)

    @tasks_app.task(name="shop.quick", shared=False)
    def quick() -> int:
        return len([bytes(1000) for _ in range(100)])

    @tasks_app.task(name="shop.quick_failure", shared=False)
    def quick_failure() -> None:
        raise OSError("disk full")

    @tasks_app.task(name="shop.slow", shared=False)
    def slow() -> int:
        kept = [bytes(1000) for _ in range(100)]
        time.sleep(0.6)
        return len(kept)

    try:
        quick.apply()
        quick_failure.apply()
        slow.apply()
    finally:
        instrumentation.uninstrument()
    failed, slow_line = (r.getMessage() for r in records.memory())
    # The fast success is not logged; the fast failure and the slow run are, traced.
    assert failed.startswith("MEMORY | TASK shop.quick_failure | ERROR | ")
    assert failed.endswith("| Error: OSError: disk full")
    assert slow_line.startswith("MEMORY | TASK shop.slow | SUCCESS | ")
    assert " | Traced: " in slow_line and "(Peak: " in slow_line
    traced_peak = records.memory()[1].sherlock.traced_peak
    assert traced_peak >= 100 * 1000


def test_opentelemetry_task_histograms_by_name_and_status(app):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exporter = sherlock_ai.add_consumer(
        OpenTelemetryExporter(meter_provider=provider, span_attributes=False))
    try:
        app.tasks["shop.double"].apply(args=(1,))
        app.tasks["shop.broken"].apply()
        data = reader.get_metrics_data()
    finally:
        sherlock_ai.remove_consumer(exporter)
        provider.shutdown()
    points = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "sherlock.task.duration":
                    for point in metric.data.data_points:
                        points[(point.attributes["task"], point.attributes["status"])] = \
                            point.count
    assert points == {("shop.double", "SUCCESS"): 1, ("shop.broken", "ERROR"): 1}


def test_prometheus_task_names_beyond_the_limit_share_one_label():
    registry = CollectorRegistry()
    exporter = PrometheusExporter(registry)
    for n in range(1005):
        exporter.measurement_ended(Measurement("memory", f"TASK t{n}", "SUCCESS", 0.01, 20,
                                      attributes={"method": "TASK", "task": f"t{n}"}))
    names = {sample.labels["task"] for metric in registry.collect()
             if metric.name == "sherlock_task_duration_seconds" for sample in metric.samples}
    assert len(names) == 1001 and OTHER_TASKS in names
