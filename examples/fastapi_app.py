"""A small FastAPI shop measured by sherlock_ai: one MEMORY line per request, named by its
route, the request id in every log line (uvicorn's access lines included), and leak detection,
which names the endpoint that keeps memory (POST /cart/items) and the line that does it.

    python examples/fastapi_app.py                 # http://127.0.0.1:8000, logs in ./logs
    python examples/fastapi_app.py --port 0        # any free port (printed on start)

Then try ``curl -i http://127.0.0.1:8000/items/3`` and look at ``logs/monitoring.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import List, Optional

import uvicorn
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import StreamingResponse

import sherlock_ai
from sherlock_ai import get_logger, monitor_memory
from sherlock_ai.integrations.fastapi import instrument_app

log = get_logger("shop")

# Every cart ever filled stays here: the leak that leak detection finds in `make demo`.
CARTS: List[bytes] = []


def create_app() -> FastAPI:
    """The shop, with sherlock_ai outside Starlette's error handling (see instrument_app)."""
    app = FastAPI(title="sherlock_ai example shop")

    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict:
        log.info("looking up item %d", item_id)
        await asyncio.sleep(0.001)
        return {"item_id": item_id, "name": f"item {item_id}"}

    @app.get("/report")
    @monitor_memory(trace_malloc=False)
    def build_report(rows: int = 50_000) -> dict:
        # A plain def: FastAPI runs it in its threadpool, and the id follows it there.
        table = [{"row": n, "total": n * 3} for n in range(rows)]
        log.info("report built with %d rows", len(table))
        return {"rows": len(table)}

    @app.post("/orders")
    async def create_order(background: BackgroundTasks) -> dict:
        def send_confirmation() -> None:
            # Runs after the response is sent: outside the measured window, same id.
            log.info("confirmation e-mail queued")

        background.add_task(send_confirmation)
        log.info("order accepted")
        return {"status": "accepted"}

    @app.get("/checkout")
    async def checkout() -> dict:
        raise RuntimeError("payment provider unavailable")

    @app.get("/export")
    async def export(rows: int = 2_000) -> StreamingResponse:
        async def csv_lines():
            yield "id,name\n"
            for n in range(rows):
                yield f"{n},item {n}\n"
                if n % 500 == 0:
                    await asyncio.sleep(0)
            log.info("export of %d rows streamed", rows)

        return StreamingResponse(csv_lines(), media_type="text/csv")

    @app.post("/cart/items")
    async def add_to_cart() -> dict:
        await asyncio.sleep(0)
        CARTS.append(bytes(4096))  # about 4 KB per request, never released
        return {"carts": len(CARTS)}

    @app.get("/health")
    async def health() -> dict:
        return {"ok": True}

    return instrument_app(app, exclude_paths=["/health"], leak_detection=True)


app = create_app()


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--logs-dir", default="logs")
    parser.add_argument("--no-console", action="store_true", help="log to files only")
    args = parser.parse_args(argv)

    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=args.logs_dir, console_enabled=not args.no_console))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    print(f"serving on http://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    # log_config=None: uvicorn's own records (access lines too) go to sherlock_ai's handlers,
    # whose format carries %(request_id)s.
    config = uvicorn.Config(app, log_config=None, access_log=True)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
