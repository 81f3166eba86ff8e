"""Two FastAPI services under real uvicorns on 127.0.0.1, for the outgoing-call tests.

    python outgoing_services.py b LOGS_DIR
    python outgoing_services.py a LOGS_DIR B_PORT

B (``trust_incoming_id=True``) answers ``GET /echo`` with the id header it received, and
``GET /hop`` with a redirect to ``/echo`` on ``localhost`` (a host A does not allow). A turns
on :func:`propagate_request_id` for ``127.0.0.1`` (twice: the second call is harmless) and
calls B from ``GET /call/{client}`` with httpx (``httpx_sync``, ``httpx_async``) or requests
(``requests_session``, ``requests_module``), on ``host`` (default ``127.0.0.1``), path
``path`` (default ``/echo``), with the caller's own id header when ``caller_id`` is given.

Binds a free port and writes ``LISTENING {port}`` on stderr; stops on SIGINT.
"""

from __future__ import annotations

import socket
import sys
from typing import Optional

import httpx
import requests
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse

import sherlock_ai
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.integrations.outgoing import propagate_request_id


def service_b(port_of: dict) -> FastAPI:
    app = FastAPI()

    @app.get("/echo")
    async def echo(request: Request) -> dict:
        return {"received": request.headers.get("x-request-id")}

    @app.get("/hop")
    async def hop() -> RedirectResponse:
        return RedirectResponse(f"http://localhost:{port_of['port']}/echo")

    return instrument_app(app, trust_incoming_id=True)


def service_a(b_port: int) -> FastAPI:
    propagate_request_id(allowed_hosts=["127.0.0.1"])
    propagate_request_id(allowed_hosts=["127.0.0.1"])
    app = FastAPI()
    session = requests.Session()

    @app.get("/call/{client}")
    async def call(client: str, host: str = "127.0.0.1", path: str = "/echo",
                   caller_id: Optional[str] = None) -> dict:
        url = f"http://{host}:{b_port}{path}"
        headers = {} if caller_id is None else {"X-Request-ID": caller_id}
        if client == "httpx_async":
            async with httpx.AsyncClient(follow_redirects=True) as async_client:
                answer = (await async_client.get(url, headers=headers)).json()
        elif client == "httpx_sync":
            with httpx.Client(follow_redirects=True) as sync_client:
                answer = sync_client.get(url, headers=headers).json()
        elif client == "requests_session":
            answer = session.get(url, headers=headers, timeout=30).json()
        else:
            answer = requests.get(url, headers=headers, timeout=30).json()
        return {"id": sherlock_ai.get_request_id(), "b_received": answer["received"]}

    return instrument_app(app)


def main() -> None:
    role, logs = sys.argv[1], sys.argv[2]
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=logs, log_format_type="json",
                                                      console_enabled=False))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = service_b({"port": port}) if role == "b" else service_a(int(sys.argv[3]))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    print(f"LISTENING {port}", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
