"""Everything a request runs sees its id (threadpool endpoints, decorated endpoints,
background tasks, any logger) and nothing leaks between concurrent or later requests."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import anyio
from fastapi import BackgroundTasks, FastAPI

import sherlock_ai
from sherlock_ai import get_logger, monitor_memory
from sherlock_ai.integrations.asgi import instrument_app
from web_support import asgi_client, get, run

log = get_logger("app.context")


def context_app(seen):
    app = FastAPI()

    @app.get("/sync")
    def sync_endpoint():
        seen["sync"] = (sherlock_ai.get_request_id(), threading.get_ident())
        log.info("sync endpoint")
        return {}

    @app.get("/decorated")
    @monitor_memory(trace_malloc=False)
    async def decorated_endpoint():
        log.info("decorated endpoint")
        return {}

    @app.get("/decorated-sync")
    @monitor_memory(trace_malloc=False)
    def decorated_sync_endpoint():
        return {}

    @app.get("/background")
    async def with_background(tasks: BackgroundTasks):
        def in_thread():
            seen["background thread"] = sherlock_ai.get_request_id()
            log.info("background thread task")

        async def in_loop():
            seen["background task"] = sherlock_ai.get_request_id()

        tasks.add_task(in_thread)
        tasks.add_task(in_loop)
        return {}

    @app.get("/spawns")
    async def spawns():
        task = asyncio.ensure_future(asyncio.sleep(0, result=sherlock_ai.get_request_id()))
        seen["child task"] = await task
        return {}

    return instrument_app(app, trust_incoming_id=True)


def test_a_threadpool_endpoint_sees_the_request_id(root_records):
    seen = {}
    response = get(context_app(seen), "/sync", headers={"X-Request-ID": "sync-1"})
    assert seen["sync"][0] == "sync-1"
    assert seen["sync"][1] != threading.get_ident()
    assert [r.request_id for r in root_records.named("app.context")] == ["sync-1"]
    assert response.headers["X-Request-ID"] == "sync-1"


def test_decorated_endpoints_log_with_the_id_nested_in_the_request(records):
    app = context_app({})
    get(app, "/decorated", headers={"X-Request-ID": "deco-1"})
    get(app, "/decorated-sync", headers={"X-Request-ID": "deco-2"})
    lines = [(r.request_id, r.getMessage().split(" | ")[1], r.sherlock.concurrent)
             for r in records.records]
    assert lines == [
        ("deco-1", f"{__name__}.context_app.<locals>.decorated_endpoint", 0),
        ("deco-1", "GET /decorated", 0),
        ("deco-2", f"{__name__}.context_app.<locals>.decorated_sync_endpoint", 0),
        ("deco-2", "GET /decorated-sync", 0),
    ]


def test_background_tasks_see_the_id_and_run_after_the_measurement(root_records):
    seen = {}
    get(context_app(seen), "/background", headers={"X-Request-ID": "bg-1"})
    assert seen["background thread"] == seen["background task"] == "bg-1"
    names = [r.name for r in root_records.records if r.request_id == "bg-1"]
    assert names == ["MonitoringLogger", "app.context"]


def test_tasks_started_in_a_request_inherit_its_id():
    seen = {}
    get(context_app(seen), "/spawns", headers={"X-Request-ID": "spawn-1"})
    assert seen["child task"] == "spawn-1"


def test_concurrent_requests_never_see_each_others_ids(root_records, records):
    app = FastAPI()
    worker_threads = set()

    @app.get("/async/{n}")
    async def async_work(n: int):
        log.info("async start %d", n)
        await asyncio.sleep(random.random() / 200)
        log.info("async end %d", n)
        return {"n": n, "id": sherlock_ai.get_request_id()}

    @app.get("/threaded/{n}")
    def threaded_work(n: int):
        worker_threads.add(threading.get_ident())
        log.info("threaded start %d", n)
        time.sleep(random.random() / 500)
        log.info("threaded end %d", n)
        return {"n": n, "id": sherlock_ai.get_request_id()}

    app = instrument_app(app)
    count = 240

    async def one(client, gate, n):
        kind = "async" if n % 2 else "threaded"
        async with gate:
            return await client.get(f"/{kind}/{n}")

    async def all_requests():
        gate = asyncio.Semaphore(32)  # made inside the loop: Python 3.9 binds it at creation
        async with asgi_client(app) as client:
            responses = await asyncio.gather(*(one(client, gate, n) for n in range(count)))
        after = (sherlock_ai.get_request_id(),
                 await anyio.to_thread.run_sync(sherlock_ai.get_request_id))
        return responses, after

    responses, after = run(all_requests())
    assert after == ("", "")
    id_of = {}
    for response in responses:
        body = response.json()
        assert body["id"] == response.headers["X-Request-ID"]
        id_of[body["n"]] = body["id"]
    assert len(set(id_of.values())) == count
    app_records = root_records.named("app.context")
    assert len(app_records) == 2 * count
    for record in app_records:
        assert record.request_id == id_of[record.args[0]]
    memory_ids = sorted(r.request_id for r in records.records)
    assert memory_ids == sorted(id_of.values())
    assert len(worker_threads) > 1
