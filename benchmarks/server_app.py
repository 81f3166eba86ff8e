"""The app the throughput benchmark serves under a real uvicorn on 127.0.0.1.

    python -m benchmarks.server_app bare|correlation-id|sherlock LOGS_DIR

Writes ``LISTENING {port}`` on stderr once bound.
"""

from __future__ import annotations

import socket
import sys

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def item(request):
    return PlainTextResponse(f"item {request.path_params['item_id']}")


def build(kind: str, logs_dir: str):
    app = Starlette(routes=[Route("/items/{item_id}", item)])
    if kind == "correlation-id":
        from asgi_correlation_id import CorrelationIdMiddleware

        app.add_middleware(CorrelationIdMiddleware)
        return app
    if kind == "sherlock":
        import sherlock_ai
        from sherlock_ai.integrations.asgi import instrument_app

        sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=logs_dir,
                                                          console_enabled=False))
        return instrument_app(app)
    return app


def main() -> None:
    import uvicorn

    kind, logs_dir = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Accepted connections inherit it: no Nagle delay between a response's header and body.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    config = uvicorn.Config(build(kind, logs_dir), log_config=None, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
