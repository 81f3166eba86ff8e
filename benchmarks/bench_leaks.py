"""What the leak watch costs, how many requests it needs to find a leak, how often it names a
route of an app that keeps nothing, and how long it holds up the event loop.

Cost: the mean in-process cost (process CPU time) of a request to a ten-route FastAPI app,
bare and with the leak watch around it (defaults, and the low-cost setting), measured in the
same run over enough requests to include several tracing windows; rounds interleave the
cases, medians are taken. Speed: requests until a route retaining 4 KB per request (one of
ten, random traffic) is flagged, when the leak is there from the start and when it starts
just after a tracing window closed. False suspects: routes flagged per 10,000 requests to the
same ten routes keeping nothing, two of them awaiting real time with scratch memory held
across the await, over several seeds. The three sit side by side per setting, so that a
change trading one for another shows. Pause: the longest ``request_finished`` call against the
number of live traced blocks, with tracemalloc already running; and, with a route keeping
many small objects per request, the longest call and the requests to flag it.

Run: ``python -m benchmarks.bench_leaks`` (add ``--quick`` for a shorter run).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import statistics
import sys
import time
import tracemalloc
from typing import Any, Callable, Dict, List, Optional, Tuple

from benchmarks.common import asgi_request_driver, table
from sherlock_ai.engine import tracing
from sherlock_ai.engine.heap import group_sizes
from sherlock_ai.leaks import LeakWatch, rules

#: The documented low-cost setting.
LOW_COST: Dict[str, Any] = {"trace_share": 0.01}
DEFAULTS: Dict[str, Any] = {}
LEAK_SIZE = 4096


class NullWatch:
    """The leak watch's calls doing nothing: the baseline for what the watch adds."""

    def request_started(self, route_key: str, endpoint: Any) -> None:
        return None

    def request_finished(self, handle: None, route_key: Optional[str] = None,
                         endpoint: Any = None) -> None:
        return None


class CollectorTime:
    """The process CPU time the garbage collector spends from :meth:`start` to :meth:`stop`
    (a ``gc.callbacks`` entry)."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._started = 0.0

    def _note(self, phase: str, info: Dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.spent += time.process_time() - self._started

    def start(self) -> None:
        gc.callbacks.append(self._note)

    def stop(self) -> None:
        gc.callbacks.remove(self._note)


class WatchedApp:
    """The leak watch around an ASGI app, as the middleware wires it: the route and its
    endpoint are read from the scope when the request ends. With ``pauses`` it also keeps
    the longest time one ``request_finished`` call took, and the collector's CPU time
    inside that call (when a ``collector`` times it)."""

    def __init__(self, app: Any, watch: Any, pauses: bool = False,
                 clock: Callable[[], float] = time.perf_counter,
                 collector: Optional[CollectorTime] = None) -> None:
        self.app = app
        self.watch = watch
        self.longest_pause = 0.0 if pauses else None
        self.clock = clock
        self.collector = collector
        self.collecting_in_longest = 0.0

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
            collected = self.collector.spent if self.collector is not None else 0.0
            start = self.clock()
            self.watch.request_finished(handle, route_key=key,
                                        endpoint=getattr(route, "endpoint", None))
            pause = self.clock() - start
            if self.longest_pause is not None and pause > self.longest_pause:
                self.longest_pause = pause
                if self.collector is not None:
                    self.collecting_in_longest = self.collector.spent - collected


def make_app(leaking: Optional[List[bool]] = None, objects: int = 0,
             waits: Optional[random.Random] = None) -> Tuple[Any, List[str]]:
    """Ten routes whose handlers await; ``/orders`` keeps 4 KB per request (``objects``
    small objects instead, when given) while ``leaking[0]`` is true. With ``waits``,
    ``/orders`` and ``/clean0`` await 0-20 ms drawn from it (a slow downstream call), holding
    scratch memory across the await."""
    from fastapi import FastAPI

    app = FastAPI()
    retained: List[bytes] = []
    state = leaking if leaking is not None else [False]

    async def downstream() -> None:
        if waits is None:
            await asyncio.sleep(0)
            return
        scratch = [bytes(300) for _ in range(12)]
        await asyncio.sleep(waits.uniform(0.0, 0.02))
        del scratch

    @app.get("/orders")
    async def orders():
        await downstream()
        if state[0]:
            retained.append([object() for _ in range(objects)] if objects
                            else b"x" * LEAK_SIZE)
        return {"orders": 20}

    def clean(path: str, width: int, slow: bool) -> None:
        async def handler():
            rows = [str(i) * width for i in range(20)]
            await (downstream() if slow else asyncio.sleep(0))
            return {"rows": len(rows)}

        app.add_api_route(path, handler, methods=["GET"], name=path)

    for number in range(9):
        clean(f"/clean{number}", number + 1, number == 0)
    return app, ["/orders"] + [f"/clean{n}" for n in range(9)]


CHUNK = 500
ROUNDS = 3


def interleaved_cost_us(apps: List[Tuple[str, Any]], paths: List[str], requests: int,
                        seed: int = 7) -> List[float]:
    """Mean process CPU time of one request to each app, in microseconds, over ``requests``
    random requests each. The apps take turns in chunks of :data:`CHUNK` requests, so that
    a shared machine whose speed changes during the run slows every case alike; a chunk that
    ends inside a tracing window runs on until the window closes (tracing is process-wide:
    the next case must not pay for it), past the end of its requests if need be (taken again
    from the start): a case whose requests ran out inside a window would leave tracing on
    for the others' chunks."""
    rng = random.Random(seed)
    picks = [rng.choice(paths) for _ in range(requests + 300)]
    runs = []
    for _, app in apps:
        drivers = {path: asgi_request_driver(app, path) for path in paths}
        runs.append([drivers[path] for path in picks])

    async def run_on(order: List[Any], done: int, end: int) -> int:
        """Requests of ``order`` from ``done`` to ``end``, and on while tracing is on."""
        while done < end or tracemalloc.is_tracing():
            await order[done % len(order)]()
            done += 1
        return done

    async def measure() -> List[float]:
        warmed = [await run_on(order, 0, 300) for order in runs]
        spent = [0.0] * len(runs)
        done = list(warmed)
        gc.collect()
        while done[0] < len(picks):
            for i, order in enumerate(runs):
                start = time.process_time()
                done[i] = await run_on(order, done[i], min(done[i] + CHUNK, len(order)))
                spent[i] += time.process_time() - start
        return [t / (n - w) * 1e6 for t, n, w in zip(spent, done, warmed)]

    return asyncio.run(measure())


def rounds_of(cases: Callable[[], List[Tuple[str, Any]]], paths: List[str], requests: int,
              close: Callable[[Any], None], rounds: int = ROUNDS
              ) -> List[Tuple[str, float, float]]:
    """Per case the median over ``rounds`` of :func:`interleaved_cost_us` (fresh apps each
    round) and the median of its per-round ratio to the first case."""
    figures: List[List[float]] = []
    labels: List[str] = []
    for _ in range(rounds):
        apps = cases()
        labels = [label for label, _ in apps]
        try:
            figures.append(interleaved_cost_us(apps, paths, requests))
        finally:
            for _, app in apps:
                close(app)
    return [(label, statistics.median(f[i] for f in figures),
             statistics.median(f[i] / f[0] for f in figures)) for i, label in enumerate(labels)]


def measure_cost(requests: int) -> List[Tuple[str, float, float]]:
    """Mean µs per request: the wiring with a watch that does nothing (the baseline), the
    bare app, and the leak watch at its defaults and at the low-cost setting; then, in
    rounds of their own, the baseline again and the watch at its defaults around the app
    whose ``/orders`` keeps 4 KB per request (the run includes finding and confirming it,
    and the denser windows after). Not in the same rounds: the RSS is the process's, and
    the leaking app's growth would call the other watches' windows early."""
    app, paths = make_app()
    leaky, _ = make_app([True])

    def cases() -> List[Tuple[str, Any]]:
        return [
            ("wiring, watch doing nothing (baseline)", WatchedApp(app, NullWatch())),
            ("bare app", app),
            ("leak watch, defaults", WatchedApp(app, LeakWatch(**DEFAULTS))),
            ("leak watch, low-cost setting", WatchedApp(app, LeakWatch(**LOW_COST))),
        ]

    def leaking() -> List[Tuple[str, Any]]:
        return [
            ("wiring, watch doing nothing (baseline)", WatchedApp(app, NullWatch())),
            ("leak watch, defaults, /orders keeping 4 KB per request",
             WatchedApp(leaky, LeakWatch(**DEFAULTS))),
        ]

    def close(served: Any) -> None:
        watch = getattr(served, "watch", None)
        if isinstance(watch, LeakWatch):
            watch.close()

    return rounds_of(cases, paths, requests, close) + \
        rounds_of(leaking, paths, requests, close)[1:]


def measure_middleware_cost(requests: int) -> List[Tuple[str, float, float]]:
    """Mean µs per request through the real ASGI middleware: without leak detection (the
    baseline), with it at the defaults and at the low-cost setting."""
    from sherlock_ai.integrations.asgi import SherlockMiddleware

    app, paths = make_app()

    def cases() -> List[Tuple[str, Any]]:
        return [
            ("SherlockMiddleware (baseline)", SherlockMiddleware(app)),
            ("+ leak_detection, defaults",
             SherlockMiddleware(app, leak_detection=True, leak_settings=DEFAULTS)),
            ("+ leak_detection, low-cost setting",
             SherlockMiddleware(app, leak_detection=True, leak_settings=LOW_COST)),
        ]

    def close(middleware: Any) -> None:
        if middleware.leak_watch is not None:
            middleware.leak_watch.close()

    return rounds_of(cases, paths, requests, close)


def requests_to_flag(settings: Dict[str, Any], leak_after: int, limit: int, seed: int = 11,
                     objects: int = 0, clock: Callable[[], float] = time.perf_counter
                     ) -> Tuple[Optional[int], float, float]:
    """Requests, counted from the leak's start, until its route is flagged (concurrency 8;
    ``/orders`` keeps 4 KB per request, or ``objects`` small objects when given), the
    longest time one ``request_finished`` call took by ``clock``, in milliseconds (by
    default the wall clock: what the event loop waits), and the garbage collector's CPU
    time inside that call."""
    leaking = [leak_after == 0]
    app, paths = make_app(leaking, objects)
    watch = LeakWatch(**settings)
    collector = CollectorTime()
    served = WatchedApp(app, watch, pauses=True, clock=clock, collector=collector)
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

    collector.start()
    try:
        asyncio.run(run())
    finally:
        collector.stop()
        watch.close()
    return flagged_at, (served.longest_pause or 0.0) * 1e3, served.collecting_in_longest * 1e3


def false_suspects(settings: Dict[str, Any], requests: int, seed: int) -> int:
    """Routes flagged while ``requests`` random requests (concurrency 8) go to the ten routes
    keeping nothing, two of them awaiting 0-20 ms: each time a route enters the watch's
    suspects counts once (every one is false)."""
    rng = random.Random(seed)
    app, paths = make_app(waits=random.Random(seed + 1))
    watch = LeakWatch(**settings)
    served = WatchedApp(app, watch)
    drivers = {path: asgi_request_driver(served, path) for path in paths}
    plan = iter([rng.choice(paths) for _ in range(requests)])
    suspected: set = set()
    flagged = 0

    async def worker() -> None:
        nonlocal suspected, flagged
        for path in plan:
            await drivers[path]()
            now = {suspect.name for suspect in watch.suspects()}
            flagged += len(now - suspected)
            suspected = now

    async def run() -> None:
        await asyncio.gather(*(worker() for _ in range(8)))

    asyncio.run(run())
    watch.close()
    return flagged


def many_small_objects(objects: int, limit: int, seed: int = 11
                       ) -> Tuple[str, str, float, float]:
    """``/orders`` keeps ``objects`` small objects per request from the start (defaults):
    the requests until it is flagged (or "not within ``limit``"), the longest
    ``request_finished`` call in process CPU time, in milliseconds, and the collector's
    part of it."""
    flagged_at, longest, collecting = requests_to_flag({}, 0, limit, seed, objects,
                                                       time.process_time)
    flagged = f"{flagged_at:,}" if flagged_at is not None else f"not within {limit:,}"
    return f"{objects:,}", flagged, longest, collecting


def pause_against_blocks(blocks: int, requests: int = 400) -> Tuple[int, float, float, float]:
    """With tracemalloc already running and ``blocks`` live traced blocks kept: the live
    traced blocks a snapshot held, the time of one snapshot, of grouping it at once (what a
    window's call did before its grouping was spread), and the longest ``request_finished``
    call of a watch over ``requests`` requests (windows of 75 requests, a snapshot every 25),
    in milliseconds."""
    tracing.hold_tracing()
    try:
        kept = [bytearray(64) for _ in range(blocks)]
        start = time.perf_counter()
        snapshot = tracemalloc.take_snapshot()
        snap_ms = (time.perf_counter() - start) * 1e3
        start = time.perf_counter()
        group_sizes(snapshot)
        group_ms = (time.perf_counter() - start) * 1e3
        live = len(snapshot.traces)
        del snapshot
        watch = LeakWatch(warmup_requests=0, window_requests=75, snapshot_every=25)
        longest = 0.0
        for _ in range(requests):
            handle = watch.request_started("GET /a", None)
            start = time.perf_counter()
            watch.request_finished(handle)
            longest = max(longest, time.perf_counter() - start)
        watch.close()
        del kept
    finally:
        tracing.release_tracing()
    return live, snap_ms, group_ms, longest * 1e3


def first_window_end(settings: Dict[str, Any]) -> int:
    """The request count at which the first scheduled window closes."""
    watch = LeakWatch(**settings)
    return watch.settings.warmup_requests + watch.settings.window_requests


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_leaks.md)."""
    # The lines the runs provoke are expected; keep them off the console.
    monitoring = logging.getLogger("MonitoringLogger")
    quiet = logging.NullHandler()
    monitoring.addHandler(quiet)
    propagate, monitoring.propagate = monitoring.propagate, False
    try:
        return _figures(quick)
    finally:
        monitoring.removeHandler(quiet)
        monitoring.propagate = propagate


def _figures(quick: bool) -> Dict[str, str]:
    requests = 6_000 if quick else 30_000
    cost = measure_cost(requests)
    cost_table = table(["case", "CPU µs per request", "× baseline"], cost)
    clean_seeds, clean_requests = ((1, 2), 5_000) if quick else (tuple(range(1, 6)), 20_000)
    through = measure_middleware_cost(requests)
    middleware_table = table(["case", "CPU µs per request", "× baseline"], through)
    rows = []
    tradeoff = []
    ratios = {label: ratio for label, _, ratio in cost}
    for label, settings in (("defaults", DEFAULTS), ("low-cost setting", LOW_COST)):
        watch = LeakWatch(**settings)
        period = watch.settings.scout_requests + watch.settings.pause_requests
        limit = 4 * period + 5_000
        from_start, pause, _ = requests_to_flag(settings, 0, limit)
        later, later_pause, _ = requests_to_flag(settings, first_window_end(settings) + 1,
                                                 limit)
        rows.append((label, f"{watch.settings.trace_share:g}", period,
                     from_start if from_start is not None else f"not within {limit}",
                     later if later is not None else f"not within {limit}",
                     max(pause, later_pause)))
        flagged = sum(false_suspects(settings, clean_requests, seed) for seed in clean_seeds)
        tradeoff.append((label, ratios[f"leak watch, {label}"],
                         from_start if from_start is not None else f"not within {limit}",
                         flagged * 10_000 / (clean_requests * len(clean_seeds))))
    tradeoff_table = table(
        ["setting", "cost (× baseline)", "requests to flag (leak from start)",
         "false suspects per 10,000 requests"], tradeoff)
    low_cost = ", ".join(f"{k}={v!r}" for k, v in LOW_COST.items())
    speed_table = table(
        ["setting", "trace_share", "requests per period", "requests to flag (leak from start)",
         "requests to flag (leak starts after a window)", "longest pause (ms)"], rows)
    pauses = table(
        ["live traced blocks", "one snapshot (ms)", "grouping it at once (ms)",
         "longest request_finished (ms)"],
        [pause_against_blocks(blocks) for blocks in
         ((10_000, 50_000) if quick else (10_000, 100_000, 300_000))])
    objects_limit = 3_000 if quick else 10_000
    small_objects = table(
        ["small objects kept per request", "seed", "requests to flag",
         "longest request_finished (CPU ms)", "garbage collection in it (CPU ms)"],
        [(objects, seed, flagged, longest, collecting)
         for seed in ((11,) if quick else (11, 12, 13))
         for objects, flagged, longest, collecting in
         [many_small_objects(objects, objects_limit, seed)
          for objects in ((20_000,) if quick else (5_000, 50_000))]])
    return {"requests": f"{requests:,}", "rounds": str(ROUNDS), "cost": cost_table,
            "tradeoff": tradeoff_table, "clean_seeds": str(len(clean_seeds)),
            "clean_requests": f"{clean_requests:,}",
            "through_middleware": middleware_table, "low_cost": low_cost,
            "requests_to_flag": speed_table, "pauses": pauses,
            "call_budget_ms": f"{rules.CALL_BUDGET_S * 1e3:g}", "small_objects": small_objects,
            "snapshot_blocks": f"{rules.SNAPSHOT_BLOCKS:,}"}


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
