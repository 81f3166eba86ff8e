"""How costs grow: ``@monitor_memory`` with tracing (and with top allocations) as the number of
live traced objects grows, and the middleware as the number of routes grows. Each row is
compared with a baseline measured in the same run.

Run: ``python -m benchmarks.bench_scaling`` (or ``make bench`` for all).
"""

from __future__ import annotations

import logging
import os
import sys
import tracemalloc
from typing import Any, Dict, List, Sequence

from benchmarks.common import asgi_per_request_us, per_call_us, table

HEAP_SIZES = (10_000, 100_000, 1_000_000)
ROUTE_COUNTS = (10, 100, 1_000)
QUICK_HEAP_SIZES = (10_000, 50_000)
QUICK_ROUTE_COUNTS = (10, 100)


def _quiet_logs() -> None:
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def heap_rows(sizes: Sequence[int]) -> List[tuple]:
    from sherlock_ai import monitor_memory

    def nothing() -> None:
        return None

    traced = monitor_memory(trace_malloc=True)(nothing)
    top = monitor_memory(trace_malloc=True, top_allocations=5)(nothing)
    rows = []
    tracemalloc.start()
    try:
        keep: List[Any] = []
        for size in sizes:
            keep.extend(object() for _ in range(size - len(keep)))
            bare = per_call_us(nothing, number=2_000, repeat=3)
            traced_us = per_call_us(traced, number=2_000, repeat=3)
            top_us = per_call_us(top, number=1 if size >= 1_000_000 else 3, repeat=2)
            rows.append((f"{size:,}", bare, traced_us, top_us, f"{top_us / traced_us:.0f}x"))
        del keep
    finally:
        tracemalloc.stop()
    return rows


def routes_app(count: int) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request):
        return PlainTextResponse("ok")

    return Starlette(routes=[Route(f"/r{n}/{{item_id}}", item) for n in range(count)])


def route_rows(counts: Sequence[int]) -> List[tuple]:
    from sherlock_ai.integrations.asgi import SherlockMiddleware

    rows = []
    for count in counts:
        last = f"/r{count - 1}/7"  # the router tries every route before this one
        bare = asgi_per_request_us(routes_app(count), last, number=1_000, repeat=3)
        ours = asgi_per_request_us(SherlockMiddleware(routes_app(count)), last, number=1_000,
                                   repeat=3)
        rows.append((count, bare, ours, ours - bare))
    return rows


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_scaling.md)."""
    _quiet_logs()
    heap = heap_rows(QUICK_HEAP_SIZES if quick else HEAP_SIZES)
    routes = route_rows(QUICK_ROUTE_COUNTS if quick else ROUTE_COUNTS)
    return {
        "heap": table(["live traced objects", "bare call µs", "traced µs",
                       "top_allocations=5 µs", "top vs traced"], heap),
        "routes": table(["routes", "bare app µs", "with SherlockMiddleware µs", "added µs"],
                        routes),
    }


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(run(quick="--quick" in sys.argv))
