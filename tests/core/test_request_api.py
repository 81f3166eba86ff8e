"""The engine's request API (sherlock_ai/engine/requests.py), without a web framework."""

from __future__ import annotations

from sherlock_ai.consumers import Consumer, add_consumer, registry, remove_consumer
from sherlock_ai.engine.requests import RequestMeter
from sherlock_ai.engine.span import current_span


class Told(Consumer):
    def __init__(self) -> None:
        self.events: list = []

    def request_started(self, request):
        self.events.append(("started", request.protocol))

    def measurement_ended(self, measurement):
        self.events.append(("ended", measurement.name, measurement.endpoint))


def test_a_request_is_one_measurement_named_when_it_ends_and_its_consumers_are_told_once():
    told, own = Told(), Told()
    add_consumer(told)
    try:
        meter = RequestMeter(protocol="asgi", min_duration=0.0, trace_malloc=False,
                             listeners=registry.with_own((own,)))
        request = meter.open()
        assert told.events == own.events == [("started", "asgi")]
        measurement = request.end("GET /a", {"route": "/a"}, endpoint=len)
        assert request.end("GET /again", {}) is None
    finally:
        remove_consumer(told)
    assert (measurement.kind, measurement.name, measurement.status) == ("memory", "GET /a",
                                                                          "SUCCESS")
    assert measurement.attributes == {"route": "/a"} and measurement.rss is not None
    assert measurement.protocol == "asgi" and measurement.endpoint is len
    assert told.events == own.events == [("started", "asgi"), ("ended", "GET /a", len)]


def test_an_error_or_an_exception_makes_it_error_and_names_the_exception_type():
    meter = RequestMeter(protocol="wsgi", min_duration=10.0, trace_malloc=False,
                         listeners=registry)
    problem = meter.open().end("GET /b", {}, error="HTTP 500")
    raised = meter.open().end("GET /c", {}, exc=KeyError("k"))
    # A fast success under min_duration that no consumer wants is not kept.
    fast = meter.open().end("GET /d", {})
    assert (problem.status, problem.error) == ("ERROR", "HTTP 500")
    assert raised.status == "ERROR" and raised.error == "KeyError: 'k'"
    assert raised.attributes == {"error_type": "KeyError"}
    assert fast is None


def test_the_line_of_a_request_goes_through_the_log_line_consumer(caplog):
    meter = RequestMeter(protocol="wsgi", min_duration=0.0, trace_malloc=False,
                         listeners=registry)
    with caplog.at_level("INFO", logger="MonitoringLogger"):
        ended = meter.open().end("GET /e", {"route": "/e"}, error="HTTP 503")
    (record,) = [r for r in caplog.records if r.name == "MonitoringLogger"]
    assert record.sherlock is ended
    assert (ended.name, ended.status, ended.error, ended.attributes) == (
        "GET /e", "ERROR", "HTTP 503", {"route": "/e"})
    assert record.getMessage().startswith("MEMORY | GET /e | ERROR | ")
    assert record.getMessage().endswith(" | Error: HTTP 503")


def test_lend_take_back_and_leave_keep_the_callers_span_as_it_was():
    meter = RequestMeter(protocol="wsgi", min_duration=0.0, trace_malloc=False,
                         listeners=registry)
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
    request.end("GET /e", {})
    assert request.lend() is None  # nothing to lend once it ended
