"""Ten routes, one of which keeps about 4 KB per request, with leak detection on: served by a
real uvicorn (FastAPI) or a threaded werkzeug server (Flask) on 127.0.0.1.

    python leak_server.py MODE LOGS_DIR [SETTINGS_JSON]

MODE: fastapi, flask, factory, methodview, endpoint, shared, native or native-clean.

``factory``, ``methodview`` and ``endpoint`` are apps whose routes share code: ten FastAPI
routes made by one factory (only ``/route7`` keeps memory), a Flask ``MethodView`` under
four URL rules and a Starlette ``HTTPEndpoint`` under four routes (only ``/shelf/c`` keeps
memory), each among clean routes. ``shared`` has two routes keeping 2 KB and 6 KB per
request at one line of a helper. ``native`` keeps 64 KB per request of ``/thumbnail``
through libc's ``malloc`` (tracemalloc cannot see it); ``native-clean`` is the same app
without the leak.

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


NATIVE_ROUTES = [f"/catalog/{i}" for i in range(9)] + ["/thumbnail"]
NATIVE_LEAKING_ROUTE = "/thumbnail"
NATIVE_LEAK_SIZE = 64 * 1024
#: The paths each mode's traffic picks from.
PATHS = {"fastapi": ROUTES, "flask": ROUTES, "factory": FACTORY_ROUTES,
         "methodview": SHELF_ROUTES, "endpoint": SHELF_ROUTES, "native": NATIVE_ROUTES,
         "native-clean": NATIVE_ROUTES, "shared": SHARED_ROUTES}


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
    asgi_apps = {"fastapi": fastapi_app, "factory": factory_app, "endpoint": endpoint_app,
                 "native": native_app, "shared": shared_app,
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
