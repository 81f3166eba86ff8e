"""Monitoring never hurts the monitored: sherlock_ai's own failures stay inside it."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import textwrap

import pytest

import sherlock_ai
from sherlock_ai import MemoryTracker, add_consumer, monitor_memory, remove_consumer


class _Broken:
    def measurement_ended(self, measurement):
        raise RuntimeError("consumer down")


class _Seen(list):
    def measurement_ended(self, measurement):
        self.append(measurement)


def test_a_raising_consumer_changes_nothing_for_the_caller_or_other_consumers(records, capfd):
    broken, seen = add_consumer(_Broken()), add_consumer(_Seen())
    try:
        @monitor_memory(trace_malloc=False)
        def work():
            return "result"

        assert work() == "result" and work() == "result"
    finally:
        remove_consumer(broken)
        remove_consumer(seen)
    assert len(seen) == 2 and len(records.messages("MEMORY")) == 2
    assert capfd.readouterr().err.count("consumer down") == 1  # reported once, not per call


def test_a_raising_logging_filter_keeps_return_value_and_exception(records):
    class Exploding(logging.Filter):
        def filter(self, record):
            raise OSError("filter exploded")

    logger = logging.getLogger("MonitoringLogger")
    bad = Exploding()
    logger.addFilter(bad)
    try:
        @monitor_memory(trace_malloc=False)
        def ok():
            return 7

        @monitor_memory(trace_malloc=False)
        def fails():
            raise KeyError("mine")

        assert ok() == 7
        with pytest.raises(KeyError, match="mine"):
            fails()
    finally:
        logger.removeFilter(bad)


def test_a_raising_handler_is_contained_by_logging(records):
    class Broken(logging.Handler):
        def emit(self, record):
            raise ValueError("handler broke")

        def handleError(self, record):  # what logging does with raiseExceptions off
            pass

    handler = Broken()
    logging.getLogger("MonitoringLogger").addHandler(handler)
    try:
        with MemoryTracker("block") as t:
            value = 3
    finally:
        logging.getLogger("MonitoringLogger").removeHandler(handler)
    assert value == 3 and t.measurement.status == "SUCCESS"


def test_a_consumer_without_hooks_is_refused():
    with pytest.raises(TypeError, match="measurement_ended"):
        add_consumer("not a consumer")


def _can_hide_proc() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs none /proc"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.servers
@pytest.mark.skipif(not _can_hide_proc(), reason="needs a private mount namespace")
def test_without_proc_figures_degrade_and_the_app_is_untouched():
    code = textwrap.dedent(
        """
        import logging, sys
        import sherlock_ai as s
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")

        @s.monitor_memory
        def f():
            return 5

        @s.monitor_resources(include_network=True)
        def g():
            raise KeyError("app error")

        assert f() == 5
        try:
            g()
        except KeyError as exc:
            assert exc.args == ("app error",)
        print("SNAP", s.ResourceMonitor.capture_memory().current_size)
        """
    )
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /proc && exec "$0" -c "$1"',
         sys.executable, code],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| Current: n/a | Change: n/a | Traced:" in out
    assert "RESOURCES | __main__.g | ERROR |" in out and "Memory: n/a (n/a)" in out
    assert "SNAP None" in out
    assert result.stderr.count("rss.psutil") == 1


def test_request_id_and_tracker_state_are_clean_after_errors():
    with pytest.raises(ValueError), sherlock_ai.request_id_context("r1"), MemoryTracker("x"):
        int("not a number")
    assert sherlock_ai.get_request_id() == ""
    assert sherlock_ai.engine.tracing.leases() == 0


def test_internal_errors_reports_an_exception_once_per_site_and_goes_on(capfd):
    from sherlock_ai.safety import internal_errors

    after = []
    for _ in range(3):
        with internal_errors:
            raise LookupError("inside the guard")
        after.append(True)
    assert after == [True, True, True]
    err = capfd.readouterr().err
    # The site is the function and line of the ``with``.
    site = f"{__name__}.test_internal_errors_reports_an_exception_once_per_site_and_goes_on:"
    assert err.count(site) == 1 and "LookupError: inside the guard" in err


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_internal_errors_lets_what_is_not_an_exception_through(kind, capfd):
    from sherlock_ai.safety import internal_errors

    with pytest.raises(kind), internal_errors:
        raise kind()
    assert "monitoring failed" not in capfd.readouterr().err
