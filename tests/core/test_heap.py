"""``top_allocations``: the lines whose retained size grew most in a block, with real
allocations of known size, real log records and real JSON lines."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tracemalloc
from pathlib import Path

import pytest

import sherlock_ai
from sherlock_ai import JsonFormatter, MemoryTracker, monitor_memory
from sherlock_ai.engine import tracing
from sherlock_ai.engine.heap import MONITORING, file_kind, site_path

BLOCK = 10_000
BYTES_OBJECT = sys.getsizeof(bytes(BLOCK))  # the object header included
PACKAGE_DIR = os.path.dirname(os.path.abspath(sherlock_ai.__file__))


def line_of(marker: str) -> int:
    """The line of this file that carries ``marker`` in a comment."""
    for number, text in enumerate(Path(__file__).read_text().splitlines(), 1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)


def retain(keep: list, n: int) -> None:
    for _ in range(n):
        keep.append(bytes(BLOCK))  # RETAINS


def retain_small(keep: list, n: int) -> None:
    keep.extend([str(i) * 3 for i in range(n)])  # RETAINS_SMALL


def churn(n: int) -> int:
    transient = [bytes(BLOCK) for _ in range(n)]  # FREED
    return len(transient)


def sites_of(tracker: MemoryTracker) -> list:
    return tracker.measurement.attributes["top_allocations"]


@pytest.fixture(autouse=True)
def _no_tracing_left():
    was_tracing = tracemalloc.is_tracing()
    yield
    assert tracing.leases() == 0
    assert tracemalloc.is_tracing() == was_tracing


def test_top_site_is_the_retaining_line_with_its_size_and_block_count():
    keep: list = []
    with MemoryTracker("block", top_allocations=3) as t:
        retain(keep, 100)
    top = sites_of(t)[0]
    assert (top["file"], top["line"]) == (__file__, line_of("RETAINS"))
    # 100 bytes objects plus the list's pointer array, grown on the same line.
    assert 100 * BYTES_OBJECT <= top["size"] <= 100 * BYTES_OBJECT + 2048
    assert 100 <= top["count"] <= 101
    assert set(top) == {"file", "line", "size", "count"}


def test_sites_are_largest_first_limited_to_n_and_freed_memory_is_left_out():
    keep: list = []
    with MemoryTracker("block", top_allocations=2) as t:
        retain_small(keep, 2_000)
        churn(50)
        retain(keep, 20)
    sites = sites_of(t)
    assert len(sites) == 2
    assert [s["line"] for s in sites] == [line_of("RETAINS"), line_of("RETAINS_SMALL")]
    assert sites[0]["size"] >= sites[1]["size"]
    assert all(s["line"] != line_of("FREED") for s in sites)


def test_no_sites_and_no_snapshot_lease_when_off():
    keep: list = []
    with MemoryTracker("block") as t:
        retain(keep, 10)
        assert tracing.leases() == 1  # the span's own, no second one for snapshots
    assert "top_allocations" not in t.measurement.attributes


def test_nested_blocks_each_report_their_own_growth():
    keep: list = []
    inner_keep: list = []
    with MemoryTracker("outer", top_allocations=5) as outer:
        retain_small(keep, 5_000)
        with MemoryTracker("inner", top_allocations=5) as inner:
            retain(inner_keep, 30)
    inner_lines = {s["line"] for s in sites_of(inner)}
    outer_lines = {s["line"] for s in sites_of(outer)}
    assert line_of("RETAINS") in inner_lines
    assert line_of("RETAINS_SMALL") not in inner_lines
    assert {line_of("RETAINS"), line_of("RETAINS_SMALL")} <= outer_lines
    outer_retains = next(s for s in sites_of(outer) if s["line"] == line_of("RETAINS"))
    assert 30 * BYTES_OBJECT <= outer_retains["size"] <= 30 * BYTES_OBJECT + 1024


def test_async_function_line_under_the_memory_line(records):
    keep: list = []

    @monitor_memory(top_allocations=1)
    async def handler() -> int:
        retain(keep, 10)
        await asyncio.sleep(0)
        retain(keep, 10)
        return len(keep)

    assert asyncio.run(handler()) == 20
    (record,) = [r for r in records.records if r.getMessage().startswith("MEMORY")]
    first, site_line = record.getMessage().split("\n")
    assert "handler | SUCCESS" in first
    assert site_line.startswith(f"    at {__file__}:{line_of('RETAINS')}: +")
    assert site_line.endswith("(+20 blocks)") or site_line.endswith("(+21 blocks)")


def write_module(folder: Path, name: str) -> None:
    (folder / f"{name}.py").write_text(
        "TABLE = {i: str(i) for i in range(2000)}\n"
        "def make():\n"
        "    return [str(i) for i in range(100)]\n"
    )


@pytest.mark.parametrize("frames", [1, 25])
def test_frames_of_sherlock_ai_tracemalloc_and_imports_are_left_out(tmp_path, frames):
    name = f"fresh_module_{frames}"
    write_module(tmp_path, name)
    sys.path.insert(0, str(tmp_path))
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start(frames)
    try:
        keep: list = []
        with MemoryTracker("imports", top_allocations=50) as t:
            module = __import__(name)
            keep.append(module.make())
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
        if started_here:
            tracemalloc.stop()
    files = [s["file"] for s in sites_of(t)]
    assert str(tmp_path / f"{name}.py") in files  # the module's own lines are the user's
    for file in files:
        assert file_kind(file) != MONITORING
        assert not file.startswith(PACKAGE_DIR)
        assert not file.startswith("<frozen importlib")


def test_a_site_file_name_cannot_forge_a_log_line(records):
    hostile = "evil.py\nMEMORY | forged | SUCCESS | 0.000s\r\u2028"
    code = compile("KEEP = [bytes(1000) for _ in range(20)]\n", hostile, "exec")
    namespace: dict = {}
    with MemoryTracker("hostile", top_allocations=3):
        exec(code, namespace)
    (record,) = [r for r in records.records if r.getMessage().startswith("MEMORY | hostile")]
    lines = record.getMessage().split("\n")
    assert len(lines) == 1 + len(record.sherlock.attributes["top_allocations"])
    assert all(line.startswith("    at ") for line in lines[1:])
    assert any("evil.py\\x0aMEMORY | forged" in line for line in lines[1:])
    assert "\r" not in record.getMessage() and "\u2028" not in record.getMessage()


def test_json_record_carries_the_sites_as_a_list(records):
    keep: list = []
    with MemoryTracker("json-block", top_allocations=2):
        retain(keep, 5)
    (record,) = [r for r in records.records if r.getMessage().startswith("MEMORY | json-block")]
    obj = json.loads(JsonFormatter().format(record))
    sites = obj["top_allocations"]
    assert isinstance(sites, list) and 1 <= len(sites) <= 2
    assert sites[0] == {"file": __file__, "line": line_of("RETAINS"),
                        "size": sites[0]["size"], "count": sites[0]["count"]}
    assert sites[0]["size"] >= 5 * BYTES_OBJECT


def test_snapshots_stay_out_of_the_block_figures():
    # Many live traced blocks make each snapshot large; none of it may show in Traced or Peak.
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start(1)
    try:
        crowd = [str(i) for i in range(100_000)]
        keep: list = []
        with MemoryTracker("crowded", top_allocations=3) as t:
            retain(keep, 50)
    finally:
        if started_here:
            tracemalloc.stop()
    m = t.measurement
    assert 50 * BYTES_OBJECT <= m.traced <= 50 * BYTES_OBJECT + 4096
    assert m.traced_peak <= 50 * BYTES_OBJECT + 64 * 1024
    assert len(crowd) == 100_000


def test_a_failing_block_keeps_its_exception_and_reports_its_sites():
    keep: list = []
    tracker = MemoryTracker("fails", top_allocations=1)
    with pytest.raises(KeyError, match="missing"), tracker:
        retain(keep, 3)
        raise KeyError("missing")
    assert tracker.measurement.status == "ERROR"
    assert sites_of(tracker)[0]["line"] == line_of("RETAINS")


def test_calls_under_min_duration_take_no_second_snapshot_and_release_the_lease(records):
    keep: list = []

    @monitor_memory(top_allocations=3, min_duration=60)
    def quick() -> int:
        retain(keep, 2)
        return 7

    assert quick() == 7
    assert records.messages("MEMORY") == []


def test_tracing_stopped_inside_the_block_does_not_hurt_the_block(capsys):
    tracker = MemoryTracker("stopped", top_allocations=2)
    with tracker:
        tracemalloc.stop()
        value = 41 + 1
    assert value == 42
    assert tracker.measurement is not None
    assert "top_allocations" not in tracker.measurement.attributes
    # Reported once, at the site of the guard around the snapshot.
    err = capsys.readouterr().err
    assert "monitoring failed in sherlock_ai.trackers." in err and "_end:" in err


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"top_allocations": 3, "trace_malloc": False}, ValueError, "trace_malloc=True"),
        ({"top_allocations": -1}, ValueError, ">= 0"),
        ({"top_allocations": True}, TypeError, "int number of sites"),
        ({"top_allocations": "5"}, TypeError, "int number of sites"),
    ],
)
def test_bad_top_allocations_fail_at_set_up_saying_what_is_accepted(kwargs, error, words):
    with pytest.raises(error, match=words):
        MemoryTracker("bad", **kwargs)
    with pytest.raises(error, match=words):
        monitor_memory(**kwargs)


def test_site_paths_are_relative_to_the_longest_sys_path_entry_or_the_project(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lib = tmp_path / "venv" / "lib"
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.syspath_prepend(str(tmp_path / "venv"))
    assert site_path(str(lib / "shop" / "cart" / "__init__.py")) == "shop/cart/__init__.py"
    assert site_path(str(tmp_path / "app" / "views.py")) == "app/views.py"  # the project
    assert site_path("/nowhere/else/app.py") == "/nowhere/else/app.py"
    assert site_path("<frozen runpy>") == "<frozen runpy>"
