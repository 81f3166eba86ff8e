"""What the MEMORY figures mean, with real allocations of known size."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc

import pytest

from sherlock_ai import MemoryTracker
from sherlock_ai.engine import tracing

MB = 1024 * 1024


def touched(n: int) -> bytes:
    """``n`` bytes whose pages are really written (calloc'd zeros may never reach RSS)."""
    return b"x" * n


def within(value: int, expected: int, slack: int = 256 * 1024) -> bool:
    return expected - slack <= value <= expected + slack


def test_traced_is_what_the_block_left_alive_and_peak_its_own_high_water():
    keep = []
    with MemoryTracker("block") as t:
        keep.append(touched(8 * MB))
        transient = touched(16 * MB)
        del transient
    m = t.measurement
    assert within(m.traced, 8 * MB)
    assert within(m.traced_peak, 24 * MB)
    assert m.status == "SUCCESS" and m.concurrent == 0


def test_rss_figures_follow_the_process():
    with MemoryTracker("grow", trace_malloc=False) as t:
        data = touched(64 * MB)
    assert t.measurement.rss_change >= 48 * MB
    assert t.measurement.rss >= 64 * MB
    assert t.measurement.traced is None and t.measurement.traced_peak is None
    del data


def test_nested_blocks_report_their_own_allocations_and_the_outer_includes_the_inner():
    keep = []
    with MemoryTracker("outer") as outer:
        keep.append(touched(10 * MB))
        with MemoryTracker("inner") as inner:
            keep.append(touched(5 * MB))
    assert within(inner.measurement.traced, 5 * MB)
    assert within(outer.measurement.traced, 15 * MB)
    assert inner.measurement.concurrent == 0 and outer.measurement.concurrent == 0


def test_outer_peak_survives_an_inner_block_resetting_the_peak():
    with MemoryTracker("outer") as outer:
        transient = touched(30 * MB)
        del transient
        with MemoryTracker("inner") as inner:
            small = touched(1 * MB)
            del small
    assert within(inner.measurement.traced_peak, 1 * MB)
    assert outer.measurement.traced_peak >= 30 * MB


def test_a_block_does_not_inherit_an_earlier_blocks_peak():
    with MemoryTracker("first"):
        transient = touched(40 * MB)
        del transient
    with MemoryTracker("second") as second:
        small = touched(1 * MB)
        del small
    assert within(second.measurement.traced_peak, 1 * MB)


def test_tracemalloc_started_by_the_user_is_left_running():
    tracemalloc.start()
    try:
        with MemoryTracker("block") as t:
            kept = touched(2 * MB)
        assert tracemalloc.is_tracing()
        assert within(t.measurement.traced, 2 * MB)
        del kept
    finally:
        tracemalloc.stop()


def test_tracing_started_by_sherlock_stops_after_the_last_block():
    assert not tracemalloc.is_tracing()
    with MemoryTracker("a"), MemoryTracker("b"):
        assert tracemalloc.is_tracing()
    assert not tracemalloc.is_tracing()
    assert tracing.leases() == 0


def test_user_stopping_tracemalloc_mid_block_drops_the_traced_figure_only():
    with MemoryTracker("block") as t:
        tracemalloc.stop()
    assert t.measurement.traced is None
    assert t.measurement.rss is not None
    assert tracing.leases() == 0


def test_a_thread_leaving_does_not_stop_another_threads_tracing():
    inside, leave = threading.Event(), threading.Event()
    result = {}

    def long_block():
        with MemoryTracker("long") as t:
            inside.set()
            leave.wait(10)
            result["kept"] = touched(3 * MB)
        result["m"] = t.measurement

    worker = threading.Thread(target=long_block)
    worker.start()
    assert inside.wait(10)
    with MemoryTracker("short") as short:
        pass
    assert tracemalloc.is_tracing(), "the short block must not stop the long one's tracing"
    leave.set()
    worker.join(10)
    assert not tracemalloc.is_tracing()
    assert within(result["m"].traced, 3 * MB)
    assert short.measurement.concurrent == 1 and result["m"].concurrent == 1


def test_overlapping_threads_say_so():
    barrier = threading.Barrier(2)
    out = []

    def work(size):
        with MemoryTracker(f"t{size}") as t:
            barrier.wait(10)
            kept = touched(size * MB)
            barrier.wait(10)
        barrier.wait(10)  # both blocks closed before either frees its data
        out.append((size, t.measurement))
        del kept

    threads = [threading.Thread(target=work, args=(s,)) for s in (2, 4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    for _size, m in out:
        assert m.concurrent == 1
        # Both blocks saw both allocations: that is what "Concurrent" warns about.
        assert within(m.traced, 6 * MB)


def test_asyncio_tasks_overlapping_are_counted_but_nesting_in_one_task_is_not():
    async def task(name, gate):
        async with MemoryTracker(name) as t, MemoryTracker(name + ".inner") as inner:
            await gate.wait()
        return t.measurement, inner.measurement

    async def main():
        gate = asyncio.Event()
        pending = [asyncio.ensure_future(task(n, gate)) for n in ("a", "b")]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*pending)

    (a, a_inner), (b, b_inner) = asyncio.run(main())
    # a and a.inner each overlapped b and b.inner, never counting their own nesting.
    assert a.concurrent == 2 and b.concurrent == 2
    assert a_inner.concurrent == 2 and b_inner.concurrent == 2


def test_durations_are_positive_and_monotonic():
    with MemoryTracker("t", trace_malloc=False) as t:
        pass
    assert 0 <= t.measurement.duration < 5


@pytest.mark.parametrize("bad", [-1, float("nan"), "1"])
def test_bad_min_duration_is_refused_at_construction(bad):
    with pytest.raises((ValueError, TypeError), match="min_duration"):
        MemoryTracker("x", min_duration=bad)


def test_bad_name_and_flag_are_refused():
    with pytest.raises(TypeError, match="name"):
        MemoryTracker("")
    with pytest.raises(TypeError, match="trace_malloc"):
        MemoryTracker("x", trace_malloc="yes")
