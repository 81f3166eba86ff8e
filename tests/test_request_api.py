"""The engine's request API (sherlock_ai/engine/requests.py), without a web framework."""

from __future__ import annotations

from sherlock_ai.consumers import Consumer, add_consumer, remove_consumer
from sherlock_ai.engine.requests import RequestMeter
from sherlock_ai.engine.span import current_span


class Told(Consumer):
    def __init__(self) -> None:
        self.events: list = []

    def request_started(self, protocol):
        self.events.append(("started", protocol))

    def finished(self, measurement):
        self.events.append(("finished", measurement.name))

    def request_ended(self, request):
        self.events.append(("ended", request.name, request.endpoint))


def test_a_request_is_one_measurement_named_when_it_ends_and_its_hooks_are_told_once():
    told, local = Told(), []
    add_consumer(told)
    try:
        meter = RequestMeter(protocol="asgi", min_duration=0.0, trace_malloc=False,
                             ended=(local.append,))
        request = meter.open()
        assert told.events == [("started", "asgi")]
        measurement = request.finish("GET /a", {"route": "/a"}, endpoint=len)
        assert request.finish("GET /again", {}) is None
    finally:
        remove_consumer(told)
    assert (measurement.kind, measurement.name, measurement.status) == ("memory", "GET /a",
                                                                          "SUCCESS")
    assert measurement.attributes == {"route": "/a"} and measurement.rss is not None
    assert told.events == [("started", "asgi"), ("finished", "GET /a"), ("ended", "GET /a", len)]
    assert [(end.name, end.measurement) for end in local] == [("GET /a", measurement)]


def test_an_error_or_an_exception_makes_it_error_and_names_the_exception_type():
    told = Told()
    add_consumer(told)
    try:
        meter = RequestMeter(protocol="wsgi", min_duration=10.0, trace_malloc=False)
        problem = meter.open().finish("GET /b", {}, error="HTTP 500")
        raised = meter.open().finish("GET /c", {}, exc=KeyError("k"))
        # A fast success under min_duration that no consumer wants is not kept.
        fast = meter.open().finish("GET /d", {})
    finally:
        remove_consumer(told)
    assert (problem.status, problem.error) == ("ERROR", "HTTP 500")
    assert raised.status == "ERROR" and raised.error == "KeyError: 'k'"
    assert raised.attributes == {"error_type": "KeyError"}
    assert fast is None


def test_when_only_the_line_listens_no_measurement_is_built_and_the_line_is_the_same(caplog):
    # The logging path (pytest's capture handler on the root) renders the line from the
    # Measurement that the line's writer builds only then.
    meter = RequestMeter(protocol="wsgi", min_duration=0.0, trace_malloc=False)
    with caplog.at_level("INFO", logger="MonitoringLogger"):
        assert meter.open().finish("GET /e", {"route": "/e"}, error="HTTP 503") is None
    (record,) = [r for r in caplog.records if r.name == "MonitoringLogger"]
    m = record.sherlock
    assert (m.name, m.status, m.error, m.attributes) == ("GET /e", "ERROR", "HTTP 503",
                                                         {"route": "/e"})
    assert record.getMessage().startswith("MEMORY | GET /e | ERROR | ")
    assert record.getMessage().endswith(" | Error: HTTP 503")


def test_lend_take_back_and_leave_keep_the_callers_span_as_it_was():
    meter = RequestMeter(protocol="wsgi", min_duration=0.0, trace_malloc=False)
    before = current_span()
    request = meter.open()
    opened = current_span()
    assert opened is not None and opened is not before
    request.leave()
    assert current_span() is before
    token = request.lend()
    assert current_span() is opened
    request.take_back(token)
    assert current_span() is before
    request.finish("GET /e", {})
    assert request.lend() is None  # nothing to lend once it ended
