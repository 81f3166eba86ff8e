"""Apps exporting Prometheus metrics, for the metrics tests.

    python prom_server.py           # FastAPI under uvicorn on 127.0.0.1, LISTENING {port}
    gunicorn prom_server:flask_app  # Flask (WSGI), e.g. several workers in multiprocess mode
"""

from __future__ import annotations

import os
import socket
import sys

from sherlock_ai.consumers import add_consumer
from sherlock_ai.exporters.prometheus import (
    PrometheusExporter,
    metrics_asgi_app,
    metrics_wsgi_app,
)

RETAINED = []


def fastapi_app():
    from fastapi import FastAPI

    from sherlock_ai.integrations.asgi import instrument_app

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item": item_id}

    @app.get("/fail")
    async def fail():
        raise RuntimeError("boom")

    @app.post("/cart")
    async def cart():
        RETAINED.append(bytes(4096))
        return {"n": len(RETAINED)}

    app.add_route("/metrics", metrics_asgi_app())  # as docs/metrics.md says
    add_consumer(PrometheusExporter())
    return instrument_app(app, exclude_paths=["/metrics"], leak_detection=True,
                          leak_settings={"warmup_requests": 10, "window_requests": 30,
                                         "snapshot_every": 5, "trace_share": 0.5})


def make_flask_app():
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from sherlock_ai.integrations.flask import Sherlock

    app = Flask("prom")

    @app.get("/items/<int:item_id>")
    def item(item_id: int):
        return {"item": item_id, "pid": os.getpid()}

    @app.get("/fail")
    def fail():
        raise RuntimeError("boom")

    Sherlock(app, exclude_paths=["/metrics"])
    add_consumer(PrometheusExporter())
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": metrics_wsgi_app()})
    return app


flask_app = make_flask_app() if "gunicorn" in sys.argv[0] else None


def main() -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(f"LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    config = uvicorn.Config(fastapi_app(), log_config=None, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
