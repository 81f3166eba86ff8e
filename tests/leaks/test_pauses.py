"""The pause the leak watch causes, through a real uvicorn server on 127.0.0.1: a route that
keeps 50,000 small objects per request. A heap snapshot copies every traced block in one
call that cannot be split, so the largest snapshot's block count is what the longest pause is
made of; it is checked, not a time (the time per block varies with the machine's load)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import List, Tuple

import httpx
import pytest

from leak_server import OBJECTS_PATHS, OBJECTS_ROUTE
from web_support import server

from .test_servers import LEAK_SERVER, line_of, suspects_on_disk

pytestmark = pytest.mark.servers

#: The most traced blocks one snapshot may copy: at about 0.3 µs per block here, about 60 ms
#: of one request's time, against 1.1 s for the 5 million blocks a snapshot held before
#: windows were bounded by the blocks they add.
SNAPSHOT_BLOCK_BOUND = 200_000


async def objects_traffic(url: str, count: int, seed: int, concurrency: int = 8,
                          first: Tuple[str, ...] = ()) -> Tuple[List[int], List[int]]:
    """``first`` in order, then ``count`` requests over the objects app's routes; the
    statuses, and the block count of every snapshot the server took."""
    rng = random.Random(seed)
    plan = iter([rng.choice(OBJECTS_PATHS) for _ in range(count)])
    statuses: List[int] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        for path in first:
            statuses.append((await client.get(path)).status_code)

        async def worker() -> None:
            for path in plan:
                send = client.post if path == OBJECTS_ROUTE else client.get
                statuses.append((await send(path)).status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        blocks = (await client.get("/snapshot-blocks")).json()["blocks"]
    return statuses, blocks


def serve_objects(tmp_path: Path, mode: str, count: int, first: Tuple[str, ...] = ()
                  ) -> Tuple[List[dict], List[int]]:
    logs = tmp_path / "logs"
    with server(LEAK_SERVER, mode, str(logs), "{}", cwd=tmp_path) as app:
        statuses, blocks = asyncio.run(objects_traffic(app.url, count, seed=12, first=first))
    assert statuses.count(200) == count + len(first)
    return suspects_on_disk(logs), blocks


def assert_objects_route_named(suspects: List[dict]) -> None:
    assert suspects, "the route keeping objects was not flagged"
    assert {s["name"] for s in suspects} == {f"POST {OBJECTS_ROUTE}"}
    top = suspects[0]["sites"][0]
    assert (top["file"], top["line"]) == ("leak_server.py", line_of("OBJECTS_KEPT"))


def test_uvicorn_route_keeping_50000_objects_per_request_snapshots_stay_bounded(tmp_path):
    suspects, blocks = serve_objects(tmp_path, "objects", 3_000)
    assert blocks, "no snapshot was taken"
    assert max(blocks) <= SNAPSHOT_BLOCK_BOUND, blocks
    assert_objects_route_named(suspects)


@pytest.mark.slow
def test_uvicorn_trace_malloc_with_a_large_live_table_opens_no_window_it_cannot_bound(tmp_path):
    # With trace_malloc=True tracemalloc runs from the first request on: the table /warm
    # loads and every object /objects keeps since are traced blocks that any snapshot would
    # copy, not only those a window added (1.15 and 15 million blocks were measured). The
    # watch then opens no window, and says so once, rather than pause a request that long.
    suspects, blocks = serve_objects(tmp_path, "objects-traced", 3_000, first=("/warm",))
    assert max(blocks, default=0) <= SNAPSHOT_BLOCK_BOUND, blocks
    assert {s["name"] for s in suspects} <= {f"POST {OBJECTS_ROUTE}"}
    said = (tmp_path / "logs" / "monitoring.jsonl").read_text(encoding="utf-8")
    assert said.count("LEAK WATCH | tracemalloc already traces about ") == 1, said[-2000:]
