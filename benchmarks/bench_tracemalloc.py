"""What tracemalloc itself costs: every allocation of the process pays while it is on.

Measures an in-process FastAPI request and an allocation-heavy loop with tracing off, on at 1
frame and on at 12 frames, in the same run. Run: ``python -m benchmarks.bench_tracemalloc``.
"""

from __future__ import annotations

import sys
import tracemalloc
from typing import Dict

from benchmarks.common import asgi_per_request_us, per_call_us, table


def _fastapi_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item(item_id: int):
        return {"item_id": item_id, "name": "thing"}

    return app


def _allocations() -> None:
    rows = [{"id": i, "name": str(i)} for i in range(200)]
    sum(len(r["name"]) for r in rows)


def measure(quick: bool = False) -> list:
    app = _fastapi_app()
    results = []
    for label, frames in (("off", 0), ("on, 1 frame", 1), ("on, 12 frames", 12)):
        if frames:
            tracemalloc.start(frames)
        try:
            request = asgi_per_request_us(app, "/items/7", number=200 if quick else 2_000,
                                          repeat=1 if quick else 3)
            loop = per_call_us(_allocations, number=50 if quick else 500,
                               repeat=1 if quick else 5)
        finally:
            if frames:
                tracemalloc.stop()
        results.append((label, request, loop))
    return results


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_tracemalloc.md)."""
    results = measure(quick)
    base_request, base_loop = results[0][1], results[0][2]
    return {"tracemalloc": table(
        ["tracemalloc", "FastAPI request (µs)", "× off", "allocation loop (µs)", "× off"],
        [(label, req, req / base_request, loop, loop / base_loop)
         for label, req, loop in results],
    )}


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
