"""A FastAPI shop under a real uvicorn on 127.0.0.1 that logs into a folder, for the report's
tests: ``POST /cart/items`` keeps 4 KB per request, ``GET /fail`` answers 503.

    python report_server.py LOGS_DIR log|json MAX_BYTES

Binds a free port and writes ``LISTENING {port}`` on stderr; stops on SIGINT.
"""

from __future__ import annotations

import socket
import sys
from typing import List

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

import sherlock_ai
from sherlock_ai import LogFileConfig, LoggingConfig
from sherlock_ai.integrations.asgi import instrument_app

CART: List[bytes] = []
LONG_ROUTE = "/users/{user_id}/orders/{order_id}/items/{item_id}/history"


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item": item_id, "data": [item_id] * 100}

    @app.post("/cart/items")
    async def add_to_cart():
        CART.append(b"c" * 4096)
        return {"items": len(CART)}

    @app.get("/fail")
    async def fail():
        return JSONResponse({"error": "out of stock"}, status_code=503)

    @app.get(LONG_ROUTE)
    async def history(user_id: int, order_id: int, item_id: int):
        return {"user": user_id}

    return app


WITH_PID = "%(asctime)s - %(process)d - %(request_id)s - %(name)s - %(levelname)s - %(message)s"


def main() -> None:
    logs, fmt, max_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    files = {stem: LogFileConfig(stem, max_bytes=max_bytes, backup_count=50, loggers=loggers)
             for stem, loggers in (("app", ()), ("monitoring", ("MonitoringLogger",)),
                                   ("performance", ("PerformanceLogger",)))}
    # Processes that share a logs folder put their pid in text lines (docs/report.md).
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=logs, log_format_type=fmt,
                                          log_format=WITH_PID, console_enabled=False,
                                          log_files=files))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(instrument_app(build_app()), log_config=None, access_log=False,
                            timeout_keep_alive=300)
    print(f"LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
