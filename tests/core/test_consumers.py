"""The one event path: every consumer (the log line, exporters, a user's) in one registry."""

from __future__ import annotations

import logging

import pytest

from sherlock_ai import Consumer, MemoryTracker, add_consumer, log_line, remove_consumer
from sherlock_ai.consumers import registry
from sherlock_ai.engine.requests import RequestMeter


def test_a_consumer_with_only_measurement_ended_gets_each_kept_measurement():
    class Collect:
        def __init__(self):
            self.names = []

        def measurement_ended(self, measurement):
            self.names.append(measurement.name)

    collect = Collect()
    assert add_consumer(collect) is collect
    add_consumer(collect)  # idempotent: told once
    try:
        with MemoryTracker("first", trace_malloc=False):
            pass
    finally:
        remove_consumer(collect)
    with MemoryTracker("after removal", trace_malloc=False):
        pass
    assert collect.names == ["first"]


def test_wants_all_decides_who_gets_the_measurements_under_min_duration():
    class Quiet(Consumer):
        def __init__(self):
            self.seen = []

        def measurement_ended(self, measurement):
            self.seen.append(measurement.below_threshold)

    class Everything(Quiet):
        wants_all = True

    quiet, everything = Quiet(), Everything()
    add_consumer(quiet)
    add_consumer(everything)
    try:
        assert registry.wants_all
        with MemoryTracker("fast", min_duration=60, trace_malloc=False):
            pass
    finally:
        remove_consumer(quiet)
        remove_consumer(everything)
    assert not registry.wants_all
    # A user's tracker keeps its measurement; only wants_all consumers get a fast success.
    assert quiet.seen == [] and everything.seen == [True]


def test_a_consumer_told_of_a_request_start_is_told_its_end_even_under_min_duration():
    class InProgress(Consumer):
        def __init__(self):
            self.open = 0

        def request_started(self, request):
            assert request.protocol == "asgi"
            self.open += 1

        def measurement_ended(self, measurement):
            if measurement.protocol is not None:
                self.open -= 1

    gauge = add_consumer(InProgress())
    try:
        meter = RequestMeter(protocol="asgi", min_duration=60.0, trace_malloc=False,
                             listeners=registry)
        request = meter.open()
        assert gauge.open == 1
        ended = request.end("GET /fast", {})
    finally:
        remove_consumer(gauge)
    assert gauge.open == 0 and ended is not None and ended.below_threshold


def test_only_the_hooks_a_consumer_overrides_are_called():
    class Started(Consumer):
        def request_started(self, request):
            pass

    started = Started()
    add_consumer(started)
    try:
        assert started.request_started in registry.hooks.started
        assert not any(getattr(h, "__self__", None) is started for h in registry.hooks.ended)
    finally:
        remove_consumer(started)


def test_an_object_with_no_hook_is_refused():
    with pytest.raises(TypeError, match="at least one of the methods request_started"):
        add_consumer(object())


def test_the_log_line_is_a_consumer_the_registry_starts_with_and_can_be_removed(caplog):
    assert list(registry)[0] is log_line
    remove_consumer(log_line)
    try:
        with caplog.at_level(logging.INFO, logger="MonitoringLogger"), \
                MemoryTracker("unlogged", trace_malloc=False):
            pass
    finally:
        add_consumer(log_line)
    assert not [r for r in caplog.records if "unlogged" in r.getMessage()]
    with caplog.at_level(logging.INFO, logger="MonitoringLogger"), \
            MemoryTracker("logged", trace_malloc=False):
        pass
    assert [r for r in caplog.records if "MEMORY | logged |" in r.getMessage()]
