"""A small Flask shop measured by sherlock_ai: one MEMORY line per request, named by its route
rule, and the request id in every log line.

    python examples/flask_app.py                   # http://127.0.0.1:5000, logs in ./logs
    python examples/flask_app.py --port 0          # any free port (printed on start)

Then try ``curl -i http://127.0.0.1:5000/items/3`` and look at ``logs/monitoring.log``.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from flask import Flask, Response, stream_with_context
from werkzeug.serving import make_server

import sherlock_ai
from sherlock_ai import get_logger, monitor_memory
from sherlock_ai.integrations.flask import Sherlock

log = get_logger("shop")
sherlock = Sherlock(exclude_paths=["/health"])


def create_app() -> Flask:
    """The app factory: the extension is created once and bound to each app."""
    app = Flask("shop")

    @app.get("/items/<int:item_id>")
    def read_item(item_id: int) -> dict:
        log.info("looking up item %d", item_id)
        return {"item_id": item_id, "name": f"item {item_id}"}

    @app.get("/report")
    @monitor_memory(trace_malloc=False)
    def build_report() -> dict:
        table = [{"row": n, "total": n * 3} for n in range(50_000)]
        log.info("report built with %d rows", len(table))
        return {"rows": len(table)}

    @app.get("/checkout")
    def checkout() -> dict:
        raise RuntimeError("payment provider unavailable")

    @app.get("/export")
    def export() -> Response:
        def csv_lines():
            yield "id,name\n"
            for n in range(2_000):
                yield f"{n},item {n}\n"
            log.info("export streamed")

        return Response(stream_with_context(csv_lines()), mimetype="text/csv")

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    sherlock.init_app(app)
    return app


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--logs-dir", default="logs")
    parser.add_argument("--no-console", action="store_true", help="log to files only")
    args = parser.parse_args(argv)

    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=args.logs_dir, console_enabled=not args.no_console))
    server = make_server("127.0.0.1", args.port, create_app(), threaded=True)
    print(f"serving on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
