"""A FastAPI app under a real uvicorn on 127.0.0.1, for the server tests.

    python uvicorn_server.py [--json-logs DIR | --text-logs DIR] [--server-log-config]
                             [--access-log]

Binds a free port and writes ``LISTENING {port}`` on stderr; stops on SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

import sherlock_ai
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.integrations.server_logs import uvicorn_log_config


def build_app() -> FastAPI:
    app = FastAPI()
    log = sherlock_ai.get_logger("app.server")

    @app.get("/items/{item_id}")
    async def read_item(item_id: int):
        log.info("item %d", item_id)
        await asyncio.sleep(0)
        return {"item_id": item_id}

    @app.get("/divide/{n}")
    async def divide(n: int):
        return {"result": 1 / n}

    @app.get("/stream")
    async def endless_stream():
        async def chunks():
            for _ in range(100_000):
                yield b"x" * 1024
                await asyncio.sleep(0.001)

        return StreamingResponse(chunks())

    return instrument_app(app, trust_incoming_id=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json-logs")
    parser.add_argument("--text-logs")
    parser.add_argument("--server-log-config", action="store_true")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args()
    if args.json_logs:
        sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
            logs_dir=args.json_logs, log_format_type="json", console_enabled=False))
    if args.text_logs:
        sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
            logs_dir=args.text_logs, console_enabled=False))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        build_app(), log_config=uvicorn_log_config() if args.server_log_config else None,
        access_log=args.access_log, lifespan="on",
        # Keep-alive connections outlive the tests' load: no close racing a reuse.
        timeout_keep_alive=300,
    )
    print(f"LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
