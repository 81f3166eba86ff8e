"""Ten routes, one of which keeps about 4 KB per request, with leak detection on: served by a
real uvicorn (FastAPI) or a threaded werkzeug server (Flask) on 127.0.0.1.

    python leak_server.py MODE LOGS_DIR [SETTINGS_JSON]

MODE: fastapi, flask, factory, methodview, endpoint, shared, native, native-clean, clean,
overlap, objects or objects-traced.

``factory``, ``methodview`` and ``endpoint`` are apps whose routes share code: ten FastAPI
routes made by one factory (only ``/route7`` keeps memory), a Flask ``MethodView`` under
four URL rules and a Starlette ``HTTPEndpoint`` under four routes (only ``/shelf/c`` keeps
memory), each among clean routes. ``shared`` has two routes keeping 2 KB and 6 KB per
request at one line of a helper. ``native`` keeps 64 KB per request of ``/thumbnail``
through libc's ``malloc`` (tracemalloc cannot see it); ``native-clean`` is the same app
without the leak. ``clean`` keeps nothing (:func:`clean_app`);
``overlap`` has a slow route leaking through a helper (:func:`overlap_app`). ``objects``
has a route keeping many small objects per request (:func:`objects_app`); ``objects-traced``
the same with ``trace_malloc=True`` and a large table loaded on the first request.

Binds a free port and writes ``LISTENING {port}`` on stderr; stops on SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any, Dict, List

import sherlock_ai

RETAINED: List[bytes] = []
LEAK_SIZE = 4096
ROUTES = [f"/catalog/{i}" for i in range(9)] + ["/cart/add"]
LEAKING_ROUTE = "/cart/add"


def keep() -> int:
    RETAINED.append(b"c" * LEAK_SIZE)  # LEAKS_HERE
    return len(RETAINED)


def work(i: int) -> int:
    # Each route allocates and frees about as much as the leak, so size alone tells nothing.
    return len([str(n) * 4 for n in range(120 + i)])


FACTORY_ROUTES = [f"/route{i}" for i in range(10)]
FACTORY_LEAKING_ROUTE = "/route7"
SHELF_ROUTES = [f"/shelf/{x}" for x in "abcd"] + [f"/catalog/{i}" for i in range(6)]
SHELF_LEAKING_ROUTE = "/shelf/c"
SHARED_SITE_SIZES = {"/small": 2048, "/large": 6144}
SHARED_ROUTES = [f"/catalog/{i}" for i in range(8)] + list(SHARED_SITE_SIZES)


def add_catalog(app: Any, count: int = 9) -> None:
    """Clean FastAPI routes ``/catalog/0`` .. ``/catalog/{count - 1}``: each does some work
    and keeps nothing, each its own function."""
    def clean_route(i: int) -> None:
        async def clean() -> dict:
            await asyncio.sleep(0)
            return {"route": i, "n": work(i)}

        clean.__name__ = f"clean_{i}"
        app.get(f"/catalog/{i}")(clean)

    for i in range(count):
        clean_route(i)


def shared_app(settings: Dict[str, Any]) -> Any:
    """Two routes keep bytes at one line of a helper, 2 KB and 6 KB per request, among eight
    clean routes."""
    from fastapi import FastAPI

    from sherlock_ai.integrations.asgi import instrument_app

    app = FastAPI()

    def keep_bytes(size: int) -> None:
        RETAINED.append(bytes(size))  # SHARED_LEAKS

    def route(path: str, size: int) -> None:
        async def handler() -> dict:
            await asyncio.sleep(0)
            if size:
                keep_bytes(size)
            await asyncio.sleep(0)
            return {"n": work(size % 7)}

        app.get(path)(handler)

    for i in range(8):
        route(f"/catalog/{i}", 0)
    for path, size in SHARED_SITE_SIZES.items():
        route(path, size)
    return instrument_app(app, leak_detection=True, leak_settings=settings)


#: The clean app's routes, as the client requests them (``{n}`` is filled in per request).
CLEAN_PATHS = (["/slow", "/wait", "/stream", "/background", "/pool", "/report", "/cached/{n}",
                "/legacy"] + [f"/catalog/{i}" for i in range(6)])
#: The keys ``/cached/{n}`` is asked for: fewer than its cache holds, so it fills, then stops.
CACHED_KEYS = 100


NATIVE_ROUTES = [f"/catalog/{i}" for i in range(9)] + ["/thumbnail"]
NATIVE_LEAKING_ROUTE = "/thumbnail"
NATIVE_LEAK_SIZE = 64 * 1024
#: The paths each mode's traffic picks from.
PATHS = {"fastapi": ROUTES, "flask": ROUTES, "factory": FACTORY_ROUTES,
         "methodview": SHELF_ROUTES, "endpoint": SHELF_ROUTES, "native": NATIVE_ROUTES,
         "native-clean": NATIVE_ROUTES, "shared": SHARED_ROUTES, "clean": CLEAN_PATHS}


def native_app(settings: Dict[str, Any], leaks: bool = True) -> Any:
    """Nine clean routes and ``/thumbnail``, which (when ``leaks``) keeps a 64 KB buffer from
    libc's ``malloc`` per request, filled so that its pages are resident, never freed:
    tracemalloc never sees it."""
    import ctypes
    import ctypes.util

    from fastapi import FastAPI

    from sherlock_ai.integrations.asgi import instrument_app

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    app = FastAPI()

    add_catalog(app)

    @app.get("/thumbnail")
    async def thumbnail() -> dict:
        await asyncio.sleep(0)
        if leaks:
            buffer = libc.malloc(NATIVE_LEAK_SIZE)  # NATIVE_LEAKS
            libc.memset(buffer, 1, NATIVE_LEAK_SIZE)
        return {"n": work(9)}

    return instrument_app(app, leak_detection=True, leak_settings=settings)


def factory_app(settings: Dict[str, Any]) -> Any:
    from fastapi import FastAPI

    from sherlock_ai.integrations.asgi import instrument_app

    app = FastAPI()

    def make(i: int) -> Any:
        async def handler() -> dict:
            await asyncio.sleep(0)
            if i == 7:
                RETAINED.append(bytes(LEAK_SIZE))  # FACTORY_LEAKS
            return {"route": i, "n": work(i)}

        return handler

    for i in range(10):
        app.add_api_route(f"/route{i}", make(i))
    return instrument_app(app, leak_detection=True, leak_settings=settings)


def shelf(which: str) -> dict:
    if which == "c":
        RETAINED.append(bytes(LEAK_SIZE))  # SHELF_LEAKS
    return {"shelf": which, "n": work(3)}


def methodview_app(settings: Dict[str, Any]) -> Any:
    from flask import Flask
    from flask.views import MethodView

    from sherlock_ai.integrations.flask import Sherlock

    app = Flask("shelves")

    class Shelf(MethodView):
        def get(self, which: str) -> dict:
            time.sleep(0.0002)
            return shelf(which)

    view = Shelf.as_view("shelf")
    for which in "abcd":
        app.add_url_rule(f"/shelf/{which}", view_func=view, defaults={"which": which})

    def clean_route(i: int) -> None:
        def clean() -> dict:
            time.sleep(0.0002)
            return {"route": i, "n": work(i)}

        app.add_url_rule(f"/catalog/{i}", f"clean_{i}", clean)

    for i in range(6):
        clean_route(i)
    Sherlock(app, leak_detection=True, leak_settings=settings)
    return app


def endpoint_app(settings: Dict[str, Any]) -> Any:
    from starlette.applications import Starlette
    from starlette.endpoints import HTTPEndpoint
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from sherlock_ai.integrations.asgi import SherlockMiddleware

    class Shelf(HTTPEndpoint):
        async def get(self, request: Any) -> Any:
            await asyncio.sleep(0)
            return JSONResponse(shelf(request.url.path.rsplit("/", 1)[-1]))

    def clean_route(i: int) -> Route:
        async def clean(request: Any) -> Any:
            await asyncio.sleep(0)
            return JSONResponse({"route": i, "n": work(i)})

        return Route(f"/catalog/{i}", clean)

    routes = [Route(f"/shelf/{which}", Shelf) for which in "abcd"]
    app = Starlette(routes=routes + [clean_route(i) for i in range(6)])
    return SherlockMiddleware(app, leak_detection=True, leak_settings=settings)



def clean_app(settings: Dict[str, Any]) -> Any:
    """Fourteen FastAPI routes that keep nothing, shaped like a real service's: handlers that
    await I/O for up to half a second (one with scratch memory held across the await), a
    streamed response, a background task, a pool made on first use, an import on the first
    request, a bounded ``lru_cache`` that fills and stops, a blocking handler run on the
    thread pool with per-thread state made on each thread's first request, and quick
    routes. Traced with OpenTelemetry's ASGI instrumentation, as many services are: its
    spans (three per request) wait in the SDK's batch span processor until 512 of them can be
    exported together."""
    import functools
    import random
    import threading

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from starlette.background import BackgroundTask

    from batched_spans import batched_tracing
    from sherlock_ai.integrations.asgi import instrument_app

    tracing = batched_tracing()
    app = FastAPI()
    app.add_middleware(OpenTelemetryMiddleware, tracer_provider=tracing)
    add_catalog(app, 6)
    pool: List[Dict[str, Any]] = []

    @app.post("/slow")
    async def slow() -> dict:
        scratch = [bytes(300) for _ in range(12)] + [str(n) * 3 for n in range(40)]
        await asyncio.sleep(random.uniform(0.0, 0.5))  # a slow downstream call
        return {"n": len(scratch)}

    @app.get("/wait")
    async def wait() -> dict:
        await asyncio.sleep(0.2)
        return {"ok": True}

    @app.get("/stream")
    async def stream() -> Any:
        async def chunks() -> Any:
            for i in range(5):
                await asyncio.sleep(0.01)
                yield (str(i) * 200).encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    async def audit(n: int) -> None:
        await asyncio.sleep(0.05)
        record = {"n": n, "rows": [str(i) for i in range(30)]}
        del record

    @app.post("/background")
    async def background() -> Any:
        return JSONResponse({"queued": True},
                            background=BackgroundTask(audit, random.randrange(1000)))

    @app.get("/pool")
    async def use_pool() -> dict:
        if not pool:  # connections made on first use, then reused
            pool.extend({"id": i, "buffer": bytearray(2048)} for i in range(20))
        await asyncio.sleep(0.005)
        return {"connection": pool[random.randrange(len(pool))]["id"]}

    @app.get("/report")
    async def report() -> dict:
        import xml.dom.minidom  # imported by the first request

        await asyncio.sleep(0.001)
        return {"xml": xml.dom.minidom.parseString("<a>1</a>").documentElement.tagName}

    @functools.lru_cache(maxsize=256)
    def price(n: int) -> Dict[str, Any]:
        return {"n": n, "label": f"item-{n}" * 4, "tiers": [n * k for k in range(8)]}

    @app.get("/cached/{n}")
    async def cached(n: int) -> dict:
        await asyncio.sleep(0)
        return price(n)

    per_thread = threading.local()

    @app.get("/legacy")
    def legacy() -> dict:  # a blocking handler: FastAPI runs it on its thread pool
        if not hasattr(per_thread, "session"):  # warmed up on each thread's first request
            per_thread.session = {"buffer": bytearray(1024), "headers": {"x": "1" * 40}}
        rows = [str(n) * 5 for n in range(60)]
        time.sleep(random.uniform(0.0, 0.02))  # a blocking downstream call
        return {"rows": len(rows), "session": len(per_thread.session)}

    return instrument_app(app, leak_detection=True, leak_settings=settings)


SLOW_LEAKING_ROUTE = "/orders"
FAST_ROUTE = "/ping"


def overlap_app(settings: Dict[str, Any]) -> Any:
    """``POST /orders`` keeps about 4 KB per request through a helper, then awaits 0.2 s;
    ``GET /ping`` answers at once; six clean routes beside them."""
    from fastapi import FastAPI

    from sherlock_ai.integrations.asgi import instrument_app

    app = FastAPI()
    add_catalog(app, 6)

    @app.post("/orders")
    async def create_order() -> dict:
        kept = keep()
        await asyncio.sleep(0.2)
        return {"kept": kept}

    @app.get("/ping")
    async def ping() -> dict:
        return {"n": work(1)}

    return instrument_app(app, leak_detection=True, leak_settings=settings)


OBJECTS_ROUTE = "/objects"
#: Small objects ``/objects`` keeps per request: each is a traced block.
OBJECTS_PER_REQUEST = 50_000
#: Small objects of the table ``/warm`` loads once, alive for the process's life: with
#: ``trace_malloc=True`` they are traced blocks every snapshot holds.
TABLE_BLOCKS = 300_000
OBJECTS_PATHS = [OBJECTS_ROUTE] + [f"/catalog/{i}" for i in range(5)]
#: ``len(snapshot.traces)`` of each heap snapshot the process took, in order: what a
#: snapshot's pause is made of (it copies every traced block in one call).
SNAPSHOT_BLOCKS: List[int] = []


def count_snapshot_blocks() -> None:
    """Record the block count of every ``tracemalloc.take_snapshot()`` in this process (the
    snapshot itself is returned unchanged)."""
    import tracemalloc

    take_snapshot = tracemalloc.take_snapshot

    def counted() -> Any:
        snapshot = take_snapshot()
        SNAPSHOT_BLOCKS.append(len(snapshot.traces))
        return snapshot

    tracemalloc.take_snapshot = counted


def objects_app(settings: Dict[str, Any], trace_malloc: bool = False) -> Any:
    """``POST /objects`` keeps :data:`OBJECTS_PER_REQUEST` small objects per request, among
    five clean routes; ``GET /snapshot-blocks`` (not a user's route: the test reads it) says
    how many traced blocks each snapshot held. With ``trace_malloc``, the middleware traces
    from its first request on and ``GET /warm`` loads a table of :data:`TABLE_BLOCKS` small
    objects that stay alive."""
    from fastapi import FastAPI

    from sherlock_ai.integrations.asgi import instrument_app

    count_snapshot_blocks()
    app = FastAPI()
    add_catalog(app, 5)
    table: List[Any] = []

    @app.post("/objects")
    async def keep_objects() -> dict:
        await asyncio.sleep(0)
        RETAINED.append([object() for _ in range(OBJECTS_PER_REQUEST)])  # OBJECTS_KEPT
        return {"kept": len(RETAINED)}

    @app.get("/warm")
    async def warm() -> dict:
        if not table:
            table.extend(object() for _ in range(TABLE_BLOCKS))
        return {"rows": len(table)}

    @app.get("/snapshot-blocks")
    async def snapshot_blocks() -> dict:
        return {"blocks": SNAPSHOT_BLOCKS}

    return instrument_app(app, leak_detection=True, leak_settings=settings,
                          trace_malloc=trace_malloc)


def clean_from_environment() -> Any:
    """:func:`clean_app` for gunicorn (``leak_server:clean_from_environment()``): logs to
    ``SHERLOCK_LEAK_LOGS``, settings from ``SHERLOCK_LEAK_SETTINGS`` (JSON)."""
    import os

    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=os.environ["SHERLOCK_LEAK_LOGS"], log_format_type="json",
        console_enabled=False))
    return clean_app(json.loads(os.environ.get("SHERLOCK_LEAK_SETTINGS", "{}")))


def fastapi_app(settings: Dict[str, Any]) -> Any:
    from fastapi import FastAPI

    from sherlock_ai.integrations.asgi import instrument_app

    app = FastAPI()

    add_catalog(app)

    @app.get("/cart/add")
    async def add_to_cart() -> dict:
        await asyncio.sleep(0)
        return {"items": keep(), "n": work(0)}

    return instrument_app(app, leak_detection=True, leak_settings=settings)


def flask_app(settings: Dict[str, Any]) -> Any:
    from flask import Flask

    from sherlock_ai.integrations.flask import Sherlock

    app = Flask("leaky")

    def clean_route(i: int) -> None:
        def clean() -> dict:
            time.sleep(0.0002)  # waits on I/O, as a real handler does
            return {"route": i, "n": work(i)}

        app.add_url_rule(f"/catalog/{i}", f"clean_{i}", clean)

    for i in range(9):
        clean_route(i)

    @app.get("/cart/add")
    def add_to_cart() -> dict:
        time.sleep(0.0002)
        return {"items": keep(), "n": work(0)}

    Sherlock(app, leak_detection=True, leak_settings=settings)
    return app


def main() -> None:
    framework, logs = sys.argv[1], sys.argv[2]
    settings = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=logs, log_format_type="json", console_enabled=False))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    asgi_apps = {"fastapi": fastapi_app, "clean": clean_app, "overlap": overlap_app,
                 "factory": factory_app, "endpoint": endpoint_app, "native": native_app,
                 "shared": shared_app, "objects": objects_app,
                 "objects-traced": lambda settings: objects_app(settings, trace_malloc=True),
                 "native-clean": lambda settings: native_app(settings, leaks=False)}
    if framework in asgi_apps:
        import uvicorn

        # Keep-alive connections outlive the run: no idle close racing a reuse.
        config = uvicorn.Config(asgi_apps[framework](settings), log_config=None,
                                access_log=False, timeout_keep_alive=300)
        print(f"LISTENING {port}", file=sys.stderr, flush=True)
        uvicorn.Server(config).run(sockets=[sock])
        return
    from werkzeug.serving import make_server

    sock.close()
    wsgi_app = methodview_app(settings) if framework == "methodview" else flask_app(settings)
    server = make_server("127.0.0.1", port, wsgi_app, threaded=True)
    print(f"LISTENING {port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()


if __name__ == "__main__":
    main()
