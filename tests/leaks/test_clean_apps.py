"""The leak watch on apps where nothing leaks, shaped like real services (handlers awaiting
I/O, streaming, background tasks, pools and caches that fill and stop), and on a leak whose
blame a client could try to move by timing its requests: through real uvicorn and gunicorn
servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path
from typing import List

import httpx
import pytest

from leak_server import CACHED_KEYS, CLEAN_PATHS, FAST_ROUTE, SLOW_LEAKING_ROUTE
from web_support import GUNICORN_PORT, SUPPORT, server

from .test_servers import LEAK_LINE, LEAK_SERVER, suspects_on_disk

pytestmark = pytest.mark.servers

POSTED = {"/slow", "/background", SLOW_LEAKING_ROUTE}


async def clean_traffic(url: str, count: int, seed: int, concurrency: int) -> List[int]:
    """``count`` requests over the clean app's routes, ``concurrency`` at a time."""
    rng = random.Random(seed)
    plan = iter([rng.choice(CLEAN_PATHS).replace("{n}", str(rng.randrange(CACHED_KEYS)))
                 for _ in range(count)])
    statuses: List[int] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            for path in plan:
                response = await (client.post(path) if path in POSTED else client.get(path))
                statuses.append(response.status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def uvicorn_clean(tmp_path: Path, count: int, seed: int, concurrency: int) -> List[dict]:
    logs = tmp_path / "logs"
    with server(LEAK_SERVER, "clean", str(logs), "{}", cwd=tmp_path) as app:
        statuses = asyncio.run(clean_traffic(app.url, count, seed, concurrency))
    assert statuses.count(200) == count
    return suspects_on_disk(logs)


def gunicorn_clean(tmp_path: Path, count: int, seed: int, concurrency: int) -> List[dict]:
    logs = tmp_path / "logs"
    os.environ["SHERLOCK_LEAK_LOGS"] = str(logs)
    try:
        with server("-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "1",
                    # Keep-alive connections outlive the run: no idle close racing a reuse.
                    "-b", "127.0.0.1:0", "--keep-alive", "300", "--chdir", str(SUPPORT),
                    "leak_server:clean_from_environment()", cwd=tmp_path,
                    port_pattern=GUNICORN_PORT, stop_signal=signal.SIGTERM) as app:
            statuses = asyncio.run(clean_traffic(app.url, count, seed, concurrency))
    finally:
        del os.environ["SHERLOCK_LEAK_LOGS"]
    assert statuses.count(200) == count
    return suspects_on_disk(logs)


def test_uvicorn_clean_app_no_suspect(tmp_path):
    # Before windows waited for the requests in flight at their opening, this run named
    # five quick routes at framework lines (contextlib, asyncio locks).
    assert uvicorn_clean(tmp_path, 10_000, seed=3, concurrency=32) == []


def test_gunicorn_uvicorn_worker_clean_app_no_suspect(tmp_path):
    assert gunicorn_clean(tmp_path, 3_000, seed=3, concurrency=64) == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_clean_app_no_suspect_in_20000_requests(tmp_path, seed):
    concurrency = (8, 16, 32, 64)[seed % 4]
    serve = gunicorn_clean if seed % 2 else uvicorn_clean
    assert serve(tmp_path, 20_000, seed, concurrency) == []


# -- the overlap attack: a fast request timed against each slow, leaking one ---------------

#: How long ``POST /orders`` awaits after keeping its bytes (see leak_server.overlap_app).
SLOW_AWAIT_S = 0.2


async def overlapping_traffic(url: str, pairs: int, ping_after: float,
                              concurrency: int = 8) -> List[int]:
    """Each worker starts a slow ``POST /orders`` and, ``ping_after`` seconds later, a
    ``GET /ping`` that answers at once. At 0 the quick route's count rises exactly when the
    slow route keeps its bytes, while the slow route is counted only 0.2 s later; just under
    0.2 s the two routes finish together, their counts in lockstep."""
    statuses: List[int] = []
    left = [pairs]
    limits = httpx.Limits(max_connections=2 * concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                slow = asyncio.ensure_future(client.post(SLOW_LEAKING_ROUTE))
                await asyncio.sleep(ping_after)
                statuses.append((await client.get(FAST_ROUTE)).status_code)
                statuses.append((await slow).status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def assert_the_slow_route_is_named(logs: Path) -> None:
    suspects = suspects_on_disk(logs)
    assert suspects, "the leaking route was not flagged"
    assert {s["name"] for s in suspects} == {f"POST {SLOW_LEAKING_ROUTE}"}
    top = suspects[0]["sites"][0]
    assert (top["file"], top["line"]) == ("leak_server.py", LEAK_LINE)


@pytest.mark.parametrize("ping_after", [0.0, SLOW_AWAIT_S * 0.95],
                         ids=["at-the-start", "at-the-end"])
def test_a_fast_request_timed_against_each_slow_one_does_not_move_the_blame(tmp_path,
                                                                            ping_after):
    logs = tmp_path / "logs"
    with server(LEAK_SERVER, "overlap", str(logs), "{}", cwd=tmp_path) as app:
        statuses = asyncio.run(overlapping_traffic(app.url, 1_500, ping_after))
    assert statuses.count(200) == 3_000
    assert_the_slow_route_is_named(logs)


async def one_at_a_time(url: str, pairs: int) -> List[int]:
    """``POST /orders`` then ``GET /ping``, each awaited before the next is sent: no request
    overlaps another."""
    statuses: List[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(pairs):
            statuses.append((await client.post(SLOW_LEAKING_ROUTE)).status_code)
            statuses.append((await client.get(FAST_ROUTE)).status_code)
    return statuses


@pytest.mark.slow
def test_the_slow_leaking_route_is_named_when_no_request_overlaps_another(tmp_path):
    logs = tmp_path / "logs"
    with server(LEAK_SERVER, "overlap", str(logs), "{}", cwd=tmp_path) as app:
        statuses = asyncio.run(one_at_a_time(app.url, 1_500))
    assert statuses.count(200) == 3_000
    assert_the_slow_route_is_named(logs)
