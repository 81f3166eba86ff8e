"""A FastAPI app under a real uvicorn on 127.0.0.1 that enqueues Celery tasks (the app of
``celery_tasks``; ``BROKER_URL`` names its Redis).

    python celery_web.py

``GET /enqueue`` sends ``shop.add`` and ``shop.fan_out`` and answers their task ids. Binds a
free port and writes ``LISTENING {port}`` on stderr; stops on SIGINT.
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from fastapi import FastAPI

from celery_tasks import add, fan_out
from sherlock_ai.integrations.asgi import instrument_app


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/enqueue")
    def enqueue() -> dict:
        return {"add": add.delay(2, 3).id, "fan_out": fan_out.delay().id}

    return instrument_app(app, trust_incoming_id=True)


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(build_app(), log_config=None, access_log=False, lifespan="on")
    print(f"LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
