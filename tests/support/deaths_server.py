"""Apps for the worker-death tests, served from the test's folder (logs in ``logs/``): a Flask
app (``wsgi_app``) and a FastAPI app (``asgi_app``) with ``/hold`` (allocates ``mb``
megabytes, writes its pid to ``pids/{request id}``, then sleeps), ``/grow`` (allocates 10 MB
at a time up to ``mb``, for a cgroup's limit to stop) and ``/ok``."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from fastapi import FastAPI
from flask import Flask, request

import sherlock_ai
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.integrations.flask import Sherlock

sherlock_ai.sherlock_ai()
_kept = []


def _hold(mb: int) -> None:
    _kept.append(b"x" * (mb << 20))
    pids = Path("pids")
    pids.mkdir(exist_ok=True)
    (pids / f"{sherlock_ai.get_request_id()}.tmp").write_text(str(os.getpid()))
    os.replace(pids / f"{sherlock_ai.get_request_id()}.tmp",
               pids / sherlock_ai.get_request_id())


def _grow(mb: int) -> None:
    _hold(0)
    for _ in range(mb // 10):
        _kept.append(b"x" * (10 << 20))
        time.sleep(0.02)


wsgi_app = Flask("deaths_server")


@wsgi_app.get("/hold")
def hold():
    _hold(int(request.args.get("mb", "0")))
    time.sleep(60)
    return "held"


@wsgi_app.get("/grow")
def grow():
    _grow(int(request.args.get("mb", "0")))
    return "grown"


@wsgi_app.get("/ok")
def ok():
    return "ok"


Sherlock(wsgi_app, trust_incoming_id=True)

api = FastAPI()


@api.get("/hold")
async def hold_async(mb: int = 0):
    _hold(mb)
    await asyncio.sleep(60)
    return "held"


@api.get("/ok")
async def ok_async():
    return "ok"


asgi_app = instrument_app(api, trust_incoming_id=True)


async def _bare(scope, receive, send):
    """An ASGI app that answers no lifespan event (uvicorn then goes on without one)."""
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


bare_asgi_app = instrument_app(_bare)
