"""Leak detection through the middleware, against real servers on 127.0.0.1: ten routes, one
keeping about 4 KB per request, random traffic at concurrency 8."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import List, Sequence

import httpx
import pytest

from leak_server import LEAK_SIZE, LEAKING_ROUTE, PATHS, ROUTES
from web_support import SUPPORT, server

pytestmark = pytest.mark.servers

LEAK_SERVER = str(SUPPORT / "leak_server.py")
# What each request of the leaking route keeps: one bytes object of LEAK_SIZE bytes.
RETAINED_PER_REQUEST = sys.getsizeof(b"c" * LEAK_SIZE)


def line_of(marker: str) -> int:
    return next(n for n, line in enumerate(Path(LEAK_SERVER).read_text().splitlines(), 1)
                if line.rstrip().endswith(f"# {marker}"))


LEAK_LINE = line_of("LEAKS_HERE")


async def random_traffic(url: str, count: int, seed: int, concurrency: int = 8,
                         paths: Sequence[str] = ROUTES) -> List[int]:
    rng = random.Random(seed)
    plan = [rng.choice(paths) for _ in range(count)]
    queue: asyncio.Queue = asyncio.Queue()
    for path in plan:
        queue.put_nowait(path)
    statuses: List[int] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            while not queue.empty():
                path = queue.get_nowait()
                statuses.append((await client.get(path)).status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def suspects_on_disk(logs: Path) -> List[dict]:
    records = [json.loads(line) for line in
               (logs / "monitoring.jsonl").read_text(encoding="utf-8").splitlines()]
    return [r for r in records if r.get("kind") == "leak_suspect"]


def serve_and_drive(tmp_path: Path, framework: str, count: int, seed: int,
                    settings: str = "{}", concurrency: int = 8) -> List[dict]:
    logs = tmp_path / "logs"
    with server(LEAK_SERVER, framework, str(logs), settings, cwd=tmp_path) as app:
        statuses = asyncio.run(random_traffic(app.url, count, seed, concurrency,
                                              paths=PATHS[framework]))
    assert statuses.count(200) == count
    return suspects_on_disk(logs)


def assert_the_leak_is_named(suspects: List[dict], method: str = "GET",
                             route: str = LEAKING_ROUTE, line: int = LEAK_LINE) -> None:
    assert suspects, "the leaking route was not flagged"
    assert {s["name"] for s in suspects} == {f"{method} {route}"}
    first = suspects[0]
    assert first["level"] == "WARNING" and first["logger"] == "MonitoringLogger"
    assert first["message"].startswith(f"LEAK SUSPECT | {method} {route} | +")
    assert first["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
    top = first["sites"][0]
    # The server runs as a script: its folder is its sys.path entry.
    assert (top["file"], top["line"]) == ("leak_server.py", line)
    assert f" | leak_server.py:{line} +" in first["message"]


def test_uvicorn_the_leaking_route_is_flagged_within_1000_requests(tmp_path):
    assert_the_leak_is_named(serve_and_drive(tmp_path, "fastapi", 1_000, seed=1))


def test_threaded_flask_the_leaking_route_is_flagged_within_1500_requests(tmp_path):
    assert_the_leak_is_named(serve_and_drive(tmp_path, "flask", 1_500, seed=2))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [4, 5])
def test_threaded_flask_at_concurrency_32_only_the_leaking_route_is_flagged(tmp_path, seed):
    # werkzeug serves each request on a new thread and closes its connection: the thread's
    # socket buffers and handler outlive the request. Before the watch fitted the threads
    # started while tracing as a level, these seeds named GET /catalog/3 at
    # http/server.py:404 and GET /catalog/2 at socket.py:335 (2 runs of 7 here).
    assert_the_leak_is_named(serve_and_drive(tmp_path, "flask", 4_000, seed, concurrency=32))


def test_uvicorn_clean_routes_are_not_flagged_in_3000_requests(tmp_path):
    suspects = serve_and_drive(tmp_path, "fastapi", 3_000, seed=3)
    assert {s["name"] for s in suspects} == {f"GET {LEAKING_ROUTE}"}


@pytest.mark.slow
def test_uvicorn_clean_routes_are_not_flagged_in_20000_requests(tmp_path):
    suspects = serve_and_drive(tmp_path, "fastapi", 20_000, seed=4)
    assert {s["name"] for s in suspects} == {f"GET {LEAKING_ROUTE}"}
    assert all(s["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
               for s in suspects)


# -- routes that share code: the counts name the route ---------------------------------------


def test_uvicorn_factory_routes_the_one_that_retains_is_flagged_within_1000_requests(tmp_path):
    assert_the_leak_is_named(serve_and_drive(tmp_path, "factory", 1_000, seed=5),
                             route="/route7", line=line_of("FACTORY_LEAKS"))


@pytest.mark.slow
def test_uvicorn_factory_routes_no_other_route_flagged_in_20000_requests(tmp_path):
    suspects = serve_and_drive(tmp_path, "factory", 20_000, seed=6)
    assert {s["name"] for s in suspects} == {"GET /route7"}
    assert all(s["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
               for s in suspects)


def test_flask_methodview_under_four_rules_the_rule_that_retains_is_flagged(tmp_path):
    assert_the_leak_is_named(serve_and_drive(tmp_path, "methodview", 2_000, seed=7),
                             route="/shelf/c", line=line_of("SHELF_LEAKS"))


def test_starlette_httpendpoint_under_four_routes_the_route_that_retains_is_flagged(tmp_path):
    assert_the_leak_is_named(serve_and_drive(tmp_path, "endpoint", 2_000, seed=8),
                             route="/shelf/c", line=line_of("SHELF_LEAKS"))


def test_uvicorn_two_routes_retaining_at_one_site_are_both_flagged_with_their_rates(
        tmp_path):
    from leak_server import SHARED_SITE_SIZES

    suspects = serve_and_drive(tmp_path, "shared", 10_000, seed=9)
    latest = {s["name"]: s for s in suspects}  # the last warning of each route
    assert set(latest) == {f"GET {path}" for path in SHARED_SITE_SIZES}
    line = line_of("SHARED_LEAKS")
    # Each route's last warning, within a quarter. Fitted on the mean of the counts at the
    # snapshot and a few requests later, with the steps of the list's reallocations in the
    # fit, they were 28% and 37% off here (the larger route carried the smaller one's share
    # whenever the latest windows lost the smaller one in the noise).
    for path, size in SHARED_SITE_SIZES.items():
        suspect = latest[f"GET {path}"]
        assert (suspect["sites"][0]["file"], suspect["sites"][0]["line"]) == (
            "leak_server.py", line)
        assert suspect["per_request"] == pytest.approx(sys.getsizeof(bytes(size)) + 8,
                                                       rel=0.25)
    assert latest["GET /large"]["sites"][0]["share"] > latest["GET /small"]["sites"][0]["share"]


# -- routes the counts cannot separate: the stack can ------------------------------------------


async def alternating_traffic(url: str, pairs: int, first: str, second: str) -> List[int]:
    """``first`` then ``second``, one request at a time: their counts move in lockstep, as
    a page that always calls the same two routes makes them."""
    statuses: List[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(pairs):
            for path in (first, second):
                statuses.append((await client.get(path)).status_code)
    return statuses


def test_uvicorn_two_routes_always_called_together_the_stack_names_the_one_that_keeps(
        tmp_path):
    # The leaking line is in a helper, outside both endpoints; the counts alone would only
    # say "shared by" both routes. A confirming window's deeper traceback holds the
    # endpoint that called the helper.
    logs = tmp_path / "logs"
    with server(LEAK_SERVER, "fastapi", str(logs), "{}", cwd=tmp_path) as app:
        statuses = asyncio.run(alternating_traffic(app.url, 600, LEAKING_ROUTE, "/catalog/0"))
    assert statuses.count(200) == 1_200
    assert_the_leak_is_named(suspects_on_disk(logs))
