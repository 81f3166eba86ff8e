"""Real servers on 127.0.0.1 under concurrent load (uvicorn, and gunicorn with two uvicorn
workers): every request answered, every id unique, each request's MEMORY record on disk exactly
once with its id, and no record carrying another request's id."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import httpx
import pytest

import sherlock_ai
from web_support import SUPPORT, server

pytestmark = pytest.mark.servers

PROOF_APP = str(SUPPORT / "proof_app.py")
EXPECTED = {  # path -> (status, request name)
    "json": (200, "GET /json/{n}"), "stream": (200, "GET /stream"),
    "slow": (200, "GET /slow"), "fail": (500, "GET /fail"),
    "unavailable": (503, "GET /unavailable"), "missing": (404, "GET <unmatched>"),
}


def plan(count: int, seed: int) -> List[Tuple[str, str, Optional[str]]]:
    """(kind, path, incoming id header) for each request."""
    rng = random.Random(seed)
    kinds = ["json"] * 10 + ["stream"] * 3 + ["slow"] * 2 + ["fail", "unavailable", "missing"]
    out = []
    for i in range(count):
        kind = rng.choice(kinds)
        path = {"json": f"/json/{i}", "stream": "/stream", "slow": "/slow",
                "fail": "/fail", "unavailable": "/unavailable",
                "missing": f"/nowhere/{i}/{rng.random()}"}[kind]
        incoming = rng.choice([None, None, None, f"client-{seed}-{i}", "not a valid id!"])
        out.append((kind, path, incoming))
    return out


async def drive(url: str, requests, concurrency: int):
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one(kind: str, path: str, incoming: Optional[str]):
            headers = {"X-Request-ID": incoming} if incoming else {}
            if kind == "fail":
                # The server closes a connection whose app raised: never reuse it.
                headers["Connection"] = "close"
            async with gate:
                response = await client.get(path, headers=headers)
            return kind, incoming, response

        return await asyncio.gather(*(one(*r) for r in requests))


def read_jsonl(logs: Path, stem: str) -> List[dict]:
    lines = (logs / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def check_run(logs: Path, results) -> Dict[str, int]:
    ids: List[str] = []
    name_of: Dict[str, str] = {}
    for kind, incoming, response in results:
        status, name = EXPECTED[kind]
        assert response.status_code == status, (kind, response.status_code)
        rid = response.headers["X-Request-ID"]
        if incoming and sherlock_ai.is_valid_request_id(incoming):
            assert rid == incoming
        else:
            assert sherlock_ai.is_valid_request_id(rid) and rid != incoming
        if kind == "json":
            assert response.json()["id"] == rid
        if kind == "stream":
            assert {line.split()[0] for line in response.text.splitlines()} == {rid}
        ids.append(rid)
        name_of[rid] = name
    assert len(set(ids)) == len(ids), "request ids must be unique"

    memory = [r for r in read_jsonl(logs, "monitoring") if r.get("kind") == "memory"]
    per_id = Counter(r["request_id"] for r in memory)
    assert set(per_id) == set(ids) and set(per_id.values()) == {1}
    for record in memory:
        assert record["name"] == name_of[record["request_id"]]
    handled = [r for r in read_jsonl(logs, "app") if r["logger"] == "proof"]
    assert handled and all(r["message"] == f"handled {r['request_id']}" for r in handled)
    return Counter(record["name"] for record in memory)


def test_uvicorn_at_concurrency_64(tmp_path):
    logs = tmp_path / "logs"
    requests = plan(3_000, seed=1)
    with server(PROOF_APP, str(logs), cwd=tmp_path) as app:
        results = asyncio.run(drive(app.url, requests, concurrency=64))
    names = check_run(logs, results)
    assert sum(names.values()) == 3_000


def test_gunicorn_with_two_uvicorn_workers_at_concurrency_64(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    monkeypatch.setenv("SHERLOCK_PROOF_LOGS", str(logs))
    argv = ["-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
            "-b", "127.0.0.1:0", "--keep-alive", "300", "--chdir", str(SUPPORT), "proof_app:app"]
    requests = plan(2_000, seed=2)
    with server(*argv, cwd=tmp_path,
                port_pattern=r"Listening at: http://127\.0\.0\.1:(\d+)") as app:
        results = asyncio.run(drive(app.url, requests, concurrency=64))
    # Both workers append to the same files; each record is one write of a whole line.
    names = check_run(logs, results)
    assert sum(names.values()) == 2_000
    pids = {r.json()["pid"] for kind, _, r in results if kind == "json"}
    if len(pids) < 2:
        pytest.skip("the kernel gave every connection to one worker this time")
