"""The app ``bench_server`` serves under a real uvicorn on 127.0.0.1 (one worker).

    python -m benchmarks.server_app bare|cid|ours LOGS_DIR

``ours`` is sherlock_ai as a service sets it up: ``sherlock_ai()`` (text lines into app.log and
monitoring.log in LOGS_DIR, console off) and ``instrument_app``, RSS read at each request's
start and end and one MEMORY line per request. Routes: see
:func:`benchmarks.middleware_cases.starlette_app`. Writes ``LISTENING {port}`` on stderr once
bound.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.middleware_cases import starlette_app  # noqa: E402 - after the path set-up

KINDS = ("bare", "cid", "ours")


def build(kind: str, logs_dir: str) -> Any:
    """The app of ``kind``."""
    app = starlette_app()
    if kind == "cid":
        from asgi_correlation_id import CorrelationIdMiddleware

        app.add_middleware(CorrelationIdMiddleware)
        return app
    if kind == "ours":
        import sherlock_ai
        from sherlock_ai.integrations.asgi import instrument_app

        sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=logs_dir,
                                                          console_enabled=False))
        return instrument_app(app)
    if kind != "bare":
        raise SystemExit(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return app


def main() -> None:
    import uvicorn

    kind, logs_dir = sys.argv[1], sys.argv[2]
    app = build(kind, logs_dir)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Accepted connections inherit it: no Nagle delay between a response's header and body.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"LISTENING {sock.getsockname()[1]}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_config=None, access_log=False, backlog=1024)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
