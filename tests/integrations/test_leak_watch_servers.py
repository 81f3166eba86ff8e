"""Leak detection through the middleware, against real servers on 127.0.0.1: ten routes, one
keeping about 4 KB per request, random traffic at concurrency 8."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import List

import httpx
import pytest

from .leak_server import LEAK_SIZE, LEAKING_ROUTE, ROUTES
from .support import HERE, server

LEAK_SERVER = str(HERE / "leak_server.py")
# What each request of the leaking route keeps: one bytes object of LEAK_SIZE bytes.
RETAINED_PER_REQUEST = sys.getsizeof(b"c" * LEAK_SIZE)
LEAK_LINE = next(n for n, line in enumerate(Path(LEAK_SERVER).read_text().splitlines(), 1)
                 if "# LEAKS_HERE" in line)


async def random_traffic(url: str, count: int, seed: int, concurrency: int = 8) -> List[int]:
    rng = random.Random(seed)
    plan = [rng.choice(ROUTES) for _ in range(count)]
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
                    settings: str = "{}") -> List[dict]:
    logs = tmp_path / "logs"
    with server(LEAK_SERVER, framework, str(logs), settings, cwd=tmp_path) as app:
        statuses = asyncio.run(random_traffic(app.url, count, seed))
    assert statuses.count(200) == count
    return suspects_on_disk(logs)


def assert_the_leak_is_named(suspects: List[dict], method: str = "GET") -> None:
    assert suspects, "the leaking route was not flagged"
    assert {s["name"] for s in suspects} == {f"{method} {LEAKING_ROUTE}"}
    first = suspects[0]
    assert first["level"] == "WARNING" and first["logger"] == "MonitoringLogger"
    assert first["message"].startswith(f"LEAK SUSPECT | {method} {LEAKING_ROUTE} | +")
    assert first["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
    top = first["sites"][0]
    assert (Path(top["file"]).name, top["line"]) == ("leak_server.py", LEAK_LINE)
    assert f"leak_server.py:{LEAK_LINE}" in first["message"]


def test_uvicorn_the_leaking_route_is_flagged_within_1000_requests(tmp_path):
    assert_the_leak_is_named(serve_and_drive(tmp_path, "fastapi", 1_000, seed=1))


def test_threaded_flask_the_leaking_route_is_flagged_within_1500_requests(tmp_path):
    assert_the_leak_is_named(serve_and_drive(tmp_path, "flask", 1_500, seed=2))


def test_uvicorn_clean_routes_are_not_flagged_in_3000_requests(tmp_path):
    suspects = serve_and_drive(tmp_path, "fastapi", 3_000, seed=3)
    assert {s["name"] for s in suspects} == {f"GET {LEAKING_ROUTE}"}


@pytest.mark.slow
def test_uvicorn_clean_routes_are_not_flagged_in_20000_requests(tmp_path):
    suspects = serve_and_drive(tmp_path, "fastapi", 20_000, seed=4)
    assert {s["name"] for s in suspects} == {f"GET {LEAKING_ROUTE}"}
    assert all(s["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
               for s in suspects)
