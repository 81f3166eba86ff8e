"""Helpers for the web integration tests: in-process clients, collected log records and
servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional

import httpx

from process_tree import stop_group

# The import root of the tests' helpers (pytest's pythonpath) and of every server they start.
SUPPORT = Path(__file__).resolve().parent
ROOT = SUPPORT.parents[1]

# The documented gunicorn.conf.py (docs/integrations.md).
GUNICORN_CONF = (
    "from sherlock_ai.integrations.server_logs import (\n"
    "    GUNICORN_ACCESS_LOG_FORMAT, gunicorn_logconfig_dict)\n"
    "bind = '127.0.0.1:0'\n"
    "workers = 1\n"
    "logconfig_dict = gunicorn_logconfig_dict()\n"
    "access_log_format = GUNICORN_ACCESS_LOG_FORMAT\n"
)
GUNICORN_PORT = r"Listening at: http://127\.0\.0\.1:(\d+)"


def asgi_client(app: Any, **kwargs: Any) -> httpx.AsyncClient:
    """An in-process client for ``app`` (httpx's ASGI transport, no network)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def get(app: Any, path: str, headers: Optional[dict] = None) -> httpx.Response:
    """One in-process GET request to an ASGI app."""

    async def one() -> httpx.Response:
        async with asgi_client(app) as client:
            return await client.get(path, headers=headers or {})

    return run(one())


class ServerProcess:
    """A Python process serving on 127.0.0.1 whose log says which port it bound."""

    def __init__(self, argv: List[str], cwd: Path, port_pattern: str) -> None:
        self.out, self.err = cwd / "server.out", cwd / "server.err"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(SUPPORT)])}
        with open(self.out, "wb") as stdout, open(self.err, "wb") as stderr:
            # A session of its own: stop() ends the server's whole process group.
            self.proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env,
                                         stdout=stdout, stderr=stderr, start_new_session=True)
        try:
            self.port = self._wait_for_port(re.compile(port_pattern))
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{self.port}"

    def _wait_for_port(self, pattern: re.Pattern) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.err.read_text()}")
            found = pattern.search(self.out.read_text(errors="replace")) or pattern.search(
                self.err.read_text(errors="replace"))
            if found and accepts(int(found.group(1))):
                return int(found.group(1))
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.err.read_text()}")

    def stop(self, first_signal: int = signal.SIGINT) -> None:
        """Ask the server's process group for a graceful stop (SIGINT, or gunicorn's SIGTERM),
        kill what is left after 20 s, and return once no process of the group is alive
        (workers included)."""
        stop_group(self.proc, first_signal)


def accepts(port: int) -> bool:
    """Whether a server accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def server(*argv: str, cwd: Path, port_pattern: str = r"LISTENING (\d+)",
           stop_signal: int = signal.SIGINT) -> Iterator[ServerProcess]:
    """Run ``python {argv}`` (scripts of this folder are importable) in ``cwd``; its output
    must name the port it bound on 127.0.0.1. Stopped at the end."""
    proc = ServerProcess(list(argv), cwd, port_pattern)
    try:
        yield proc
    finally:
        proc.stop(stop_signal)


class RawExchange:
    """What an ASGI app sent back to :func:`asgi_call`."""

    def __init__(self) -> None:
        self.messages: List[dict] = []

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.messages if m["type"] == "http.response.start")

    def header(self, name: bytes) -> Optional[bytes]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        values = [v for k, v in start.get("headers", []) if k.lower() == name.lower()]
        assert len(values) <= 1, f"header {name!r} sent {len(values)} times"
        return values[0] if values else None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages
                        if m["type"] == "http.response.body")


async def asgi_call(app: Any, path: str = "/", *, method: str = "GET",
                    headers: Optional[List[tuple]] = None, root_path: str = "",
                    disconnect_after_chunks: Optional[int] = None,
                    spec_version: str = "2.3") -> RawExchange:
    """Drive one HTTP request through ``app`` speaking ASGI directly, as a server does, with
    any header bytes and method token. With ``disconnect_after_chunks`` the client goes away
    after receiving that many body chunks: ``receive`` then answers ``http.disconnect`` and,
    as servers of ASGI spec 2.4 do, further body sends raise ``OSError``."""
    exchange = RawExchange()
    gone = asyncio.Event()
    sent_request = False

    async def receive() -> dict:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if gone.is_set() and message["type"] == "http.response.body" and spec_version >= "2.4":
            raise OSError("client went away")
        exchange.messages.append(message)
        chunks = [m for m in exchange.messages if m["type"] == "http.response.body"]
        if disconnect_after_chunks is not None and len(chunks) >= disconnect_after_chunks:
            gone.set()
        if message["type"] == "http.response.body" and not message.get("more_body"):
            gone.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1", "method": method, "scheme": "http",
        "path": root_path + path, "raw_path": (root_path + path).encode(),
        "root_path": root_path, "query_string": b"",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return exchange
