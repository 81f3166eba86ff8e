"""The app the proof tests serve: JSON, streaming, slow, failing and 503 routes; every handler
logs the request id it sees.

    python proof_app.py LOGS_DIR [log|json]    # uvicorn on 127.0.0.1, LISTENING {port}
    SHERLOCK_PROOF_LOGS=DIR gunicorn -k uvicorn.workers.UvicornWorker proof_app:app
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse

import sherlock_ai
from sherlock_ai.integrations.asgi import instrument_app

log = sherlock_ai.get_logger("proof")


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/json/{n}")
    async def json_route(n: int):
        rid = sherlock_ai.get_request_id()
        log.info("handled %s", rid)
        await asyncio.sleep(0)
        return {"n": n, "id": rid, "pid": os.getpid()}

    @app.get("/stream")
    async def stream():
        rid = sherlock_ai.get_request_id()

        async def chunks():
            for i in range(20):
                yield f"{rid} {i}\n".encode()
                await asyncio.sleep(0)

        return StreamingResponse(chunks())

    @app.get("/slow")
    async def slow(seconds: float = 0.02):
        await asyncio.sleep(seconds)
        log.info("handled %s", sherlock_ai.get_request_id())
        return {"id": sherlock_ai.get_request_id()}

    @app.get("/fail")
    async def fail():
        raise RuntimeError("proof failure")

    @app.get("/unavailable")
    async def unavailable():
        return Response("down", status_code=503)

    return app


def set_up_logs(logs_dir: str, kind: str = "json") -> None:
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=logs_dir, log_format_type=kind, console_enabled=False))


if "SHERLOCK_PROOF_LOGS" in os.environ:  # imported by gunicorn's workers
    set_up_logs(os.environ["SHERLOCK_PROOF_LOGS"])
app = instrument_app(create_app(), trust_incoming_id=True)


def main() -> None:
    import uvicorn

    set_up_logs(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "json")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    print(f"LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    # Idle keep-alive connections stay open for the whole run: a server closing one (after 5 s
    # by default) while the client reuses it fails that request whatever the app does.
    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_keep_alive=300)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
