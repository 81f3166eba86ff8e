"""The one event path: consumers, sinks and request observers share one registry."""

from __future__ import annotations

import pytest

from sherlock_ai import MemoryTracker, add_sink, remove_sink
from sherlock_ai.consumers import (
    Consumer,
    InstallableConsumer,
    add_consumer,
    registry,
    remove_consumer,
)


def test_a_consumer_with_only_finished_gets_each_kept_measurement():
    class Collect:
        def __init__(self):
            self.names = []

        def finished(self, measurement):
            self.names.append(measurement.name)

    collect = Collect()
    add_consumer(collect)
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

        def finished(self, measurement):
            self.seen.append(measurement.below_threshold)

    class Everything(Quiet):
        wants_all = True

    quiet, everything = Quiet(), Everything()
    add_consumer(quiet)
    add_consumer(everything)
    try:
        with MemoryTracker("fast", min_duration=60, trace_malloc=False):
            pass
    finally:
        remove_consumer(quiet)
        remove_consumer(everything)
    # A user's tracker keeps its measurement; only wants_all consumers get a fast success.
    assert quiet.seen == [] and everything.seen == [True]


def test_only_the_hooks_a_consumer_overrides_are_called():
    class Started(Consumer):
        def request_started(self, protocol):
            pass

    started = Started()
    add_consumer(started)
    try:
        assert started.request_started in registry.started
        assert not any(getattr(h, "__self__", None) is started for h in registry.finished)
    finally:
        remove_consumer(started)


def test_an_object_with_no_hook_is_refused():
    with pytest.raises(TypeError, match="at least one of the methods finished"):
        add_consumer(object())


def test_remove_sink_removes_a_bound_method_sink():
    # ``seen.append`` is a new object at each access: removal must match it by equality.
    seen = []
    add_sink(seen.append)
    remove_sink(seen.append)
    with MemoryTracker("after removal", trace_malloc=False):
        pass
    assert seen == []


def test_an_installable_consumer_is_told_once_however_often_it_is_installed():


    class Counting(InstallableConsumer):
        def __init__(self):
            self.prepared = 0
            self.seen = []

        def before_install(self):
            self.prepared += 1

        def finished(self, measurement):
            self.seen.append(measurement.name)

    consumer = Counting()
    try:
        assert consumer.install() is consumer.install() is consumer
        assert consumer.prepared == 1
        with MemoryTracker("installed"):
            pass
        assert consumer.seen == ["installed"]
    finally:
        consumer.uninstall()
    with MemoryTracker("uninstalled"):
        pass
    assert consumer.seen == ["installed"]
    consumer.install()
    try:
        assert consumer.prepared == 2
    finally:
        consumer.uninstall()
