"""What the leak watch costs, and how many requests it needs to find a leak.

Cost: the mean in-process cost of a request to a ten-route FastAPI app, bare and with the
leak watch around it (defaults, and the low-cost setting), measured in the same run over
enough requests to include many tracing windows. Speed: requests until a route retaining
4 KB per request (one of ten, random traffic) is flagged, when the leak is there from the
start and when it starts just after a tracing window closed.

Run: ``python -m benchmarks.bench_leaks`` (add ``--quick`` for a shorter run).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.common import asgi_request_driver, table
from sherlock_ai.leaks import LeakWatch

#: The documented low-cost setting.
LOW_COST: Dict[str, Any] = {"trace_share": 0.02}
DEFAULTS: Dict[str, Any] = {}
LEAK_SIZE = 4096


class WatchedApp:
    """The leak watch around an ASGI app, as the middleware wires it: the route and its
    endpoint are read from the scope when the request ends."""

    def __init__(self, app: Any, watch: LeakWatch) -> None:
        self.app = app
        self.watch = watch

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handle = self.watch.request_started("", None)
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            key = f"{scope['method']} {getattr(route, 'path', '<unmatched>')}"
            self.watch.request_finished(handle, route_key=key,
                                        endpoint=getattr(route, "endpoint", None))


def make_app(leaking: Optional[List[bool]] = None) -> Tuple[Any, List[str]]:
    """Ten routes whose handlers await; ``/orders`` keeps 4 KB per request while
    ``leaking[0]`` is true."""
    from fastapi import FastAPI

    app = FastAPI()
    retained: List[bytes] = []
    state = leaking if leaking is not None else [False]

    @app.get("/orders")
    async def orders():
        await asyncio.sleep(0)
        if state[0]:
            retained.append(b"x" * LEAK_SIZE)
        return {"orders": 20}

    def clean(path: str, width: int) -> None:
        async def handler():
            rows = [str(i) * width for i in range(20)]
            await asyncio.sleep(0)
            return {"rows": len(rows)}

        app.add_api_route(path, handler, methods=["GET"], name=path)

    for number in range(9):
        clean(f"/clean{number}", number + 1)
    return app, ["/orders"] + [f"/clean{n}" for n in range(9)]


def mean_cost_us(app: Any, paths: List[str], requests: int, seed: int = 7) -> float:
    """Mean cost of one request over ``requests`` random requests, in microseconds."""
    rng = random.Random(seed)
    drivers = {path: asgi_request_driver(app, path) for path in paths}
    order = [drivers[rng.choice(paths)] for _ in range(requests)]

    async def run() -> float:
        for one in order[:300]:  # warm-up
            await one()
        start = time.perf_counter()
        for one in order:
            await one()
        return (time.perf_counter() - start) / len(order) * 1e6

    return asyncio.run(run())


def measure_cost(requests: int) -> List[Tuple[str, float]]:
    app, paths = make_app()
    results = [("bare app (baseline)", mean_cost_us(app, paths, requests))]
    for label, settings in (("leak watch, defaults", DEFAULTS),
                            ("leak watch, low-cost setting", LOW_COST)):
        watch = LeakWatch(**settings)
        results.append((label, mean_cost_us(WatchedApp(app, watch), paths, requests)))
        watch.close()
    return results


def requests_to_flag(settings: Dict[str, Any], leak_after: int, limit: int,
                     seed: int = 11) -> Optional[int]:
    """Requests, counted from the leak's start, until its route is flagged (concurrency 8)."""
    leaking = [leak_after == 0]
    app, paths = make_app(leaking)
    watch = LeakWatch(**settings)
    served = WatchedApp(app, watch)
    rng = random.Random(seed)
    drivers = {path: asgi_request_driver(served, path) for path in paths}
    done = 0
    flagged_at: Optional[int] = None

    async def worker() -> None:
        nonlocal done, flagged_at
        while flagged_at is None and done < limit:
            await drivers[rng.choice(paths)]()
            done += 1
            if done == leak_after:
                leaking[0] = True
            if leaking[0] and watch.suspects():
                flagged_at = done - leak_after

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(8)))

    asyncio.run(run())
    watch.close()
    return flagged_at


def first_window_end(settings: Dict[str, Any]) -> int:
    """The request count at which the first scheduled window closes."""
    watch = LeakWatch(**settings)
    return watch.settings.warmup_requests + watch.settings.window_requests


def run(quick: bool = False) -> str:
    requests = 6_000 if quick else 30_000
    cost = measure_cost(requests)
    base = cost[0][1]
    cost_table = table(["case", "µs per request", "× bare"],
                       [(label, us, us / base) for label, us in cost])
    rows = []
    for label, settings in (("defaults", DEFAULTS), ("low-cost setting", LOW_COST)):
        watch = LeakWatch(**settings)
        period = watch.settings.window_requests + watch.settings.pause_requests
        limit = 4 * period + 5_000
        from_start = requests_to_flag(settings, 0, limit)
        later = requests_to_flag(settings, first_window_end(settings) + 1, limit)
        rows.append((label, f"{watch.settings.trace_share:g}", period,
                     from_start if from_start is not None else f"not within {limit}",
                     later if later is not None else f"not within {limit}"))
    low_cost = ", ".join(f"{k}={v!r}" for k, v in LOW_COST.items())
    speed_table = table(
        ["setting", "trace_share", "requests per period", "requests to flag (leak from start)",
         "requests to flag (leak starts after a window)"], rows)
    return (
        "## Leak watch\n\n"
        "Mean in-process cost of a request to a ten-route FastAPI app (handlers that await),\n"
        f"over {requests:,} random requests, bare and with the leak watch around it as the\n"
        "middleware wires it, measured in the same run. Tracing windows make some requests\n"
        "several times slower; the mean spreads that over all requests.\n\n"
        f"{cost_table}\n\n"
        f"Low-cost setting: `LeakWatch({low_cost})`.\n\n"
        "Requests until a route keeping 4 KB per request (one of ten, random traffic at\n"
        "concurrency 8) is flagged, counted from the leak's start:\n\n"
        f"{speed_table}\n"
    )


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
