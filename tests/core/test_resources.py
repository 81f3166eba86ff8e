"""ResourceMonitor snapshots, format_bytes and the RESOURCES line."""

from __future__ import annotations

import re
import time
import tracemalloc

import pytest

from sherlock_ai import ResourceMonitor, ResourceTracker, format_bytes, monitor_resources


@pytest.mark.parametrize(
    "value, text",
    [
        (0, "0.00B"),
        (1023, "1023.00B"),
        (1536, "1.50KB"),
        (512 * 1024 * 1024, "512.00MB"),
        (-1536, "-1.50KB"),
        (3 * 1024**3, "3.00GB"),
        (None, "n/a"),
    ],
)
def test_format_bytes(value, text):
    assert format_bytes(value) == ResourceMonitor.format_bytes(value) == text


def test_capture_memory_reports_rss_peak_and_change_since_previous_capture():
    ResourceMonitor.capture_memory()
    data = b"z" * (32 * 1024 * 1024)
    snap = ResourceMonitor.capture_memory()
    assert snap.size_diff >= 24 * 1024 * 1024
    assert snap.peak_size >= snap.current_size >= 32 * 1024 * 1024
    assert abs(snap.timestamp - time.time()) < 60
    assert snap.traced_memory == (0, 0)
    del data
    tracemalloc.start()
    try:
        kept = b"k" * 100_000
        current, peak = ResourceMonitor.capture_memory().traced_memory
        assert current >= 100_000 and peak >= current
        del kept
    finally:
        tracemalloc.stop()


def test_capture_resources():
    snap = ResourceMonitor.capture_resources()
    assert snap.num_threads >= 1 and snap.cpu_time > 0 and snap.memory_rss > 0


RESOURCES = re.compile(
    r"RESOURCES \| (?P<name>\S+) \| SUCCESS \| \d+\.\d{3}s \| CPU: \d+\.\d% \| "
    r"Memory: \d+\.\d\d[KMG]?B \([+-]\d+\.\d\d[KMG]?B\) \| Threads: \d+"
    r"(?P<io> \| I/O: R:\S+ W:\S+)?(?P<net> \| Net: S:\S+ R:\S+)?$"
)


def test_resources_line_and_cpu_figure_is_this_process(records, tmp_path):
    @monitor_resources(include_network=True)
    def busy():
        start = time.process_time()
        while time.process_time() - start < 0.05:
            pass
        (tmp_path / "out.bin").write_bytes(b"w" * 1_000_000)

    busy()
    (line,) = records.messages("RESOURCES")
    match = RESOURCES.match(line)
    assert match and match["io"] and match["net"], line
    attrs = records.records[0].sherlock.attributes
    assert attrs["cpu_time"] >= 0.05
    assert attrs["threads"] >= 1
    assert records.records[0].name == "MonitoringLogger"


def test_resource_tracker_without_io(records):
    with ResourceTracker("block", include_io=False) as t:
        pass
    (line,) = records.messages("RESOURCES")
    assert RESOURCES.match(line)["io"] is None
    assert "io_read" not in t.measurement.attributes
