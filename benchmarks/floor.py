"""A hand-written floor for the middleware benchmarks: the least any middleware doing
sherlock_ai's job per request can do, written for the benchmark only (not a product).

Per HTTP request: a fresh id in a context variable, the id header on the response, RSS read at
the start and at the end (``pread`` of ``/proc/self/statm``), and one MEMORY line in the default
text format handed to the kernel with one ``os.write`` on an ``O_APPEND`` file. Nothing else:
no route-name checks, no exception, 5xx, trailer or disconnect handling, no overlap count, no
look at ``logging`` (levels, other handlers), no lock, no rotation, no report of a failed
write. What it costs is the cost of the figures and of the line themselves; what sherlock_ai
adds beyond it is the cost of the rest.
"""

from __future__ import annotations

import contextvars
import os
import time
from typing import Any, Optional, Tuple

from sherlock_ai.formatting import format_bytes, format_change
from sherlock_ai.request_id import generate_request_id

_request_id: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar(
    "benchmark_floor_request_id", default=None)
_PAGE = os.sysconf("SC_PAGE_SIZE")
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class FloorMiddleware:
    """Wraps an ASGI app; writes its lines to ``path``."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self._file = os.open(path, _FLAGS, 0o644)
        self._statm = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
        self._second: Tuple[int, str] = (-1, "")

    def _rss(self) -> int:
        return int(os.pread(self._statm, 64, 0).split(None, 2)[1]) * _PAGE

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = generate_request_id()
        token = _request_id.set(request_id)
        header = (b"x-request-id", request_id.encode("latin-1"))
        start_rss, start = self._rss(), time.perf_counter()

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration, rss = time.perf_counter() - start, self._rss()
            now = time.time()
            if self._second[0] != int(now):
                self._second = (int(now), time.strftime("%Y-%m-%d %H:%M:%S",
                                                        time.localtime(now)))
            route = scope.get("route")
            name = f"{scope['method']} {getattr(route, 'path', '<unmatched>')}"
            line = (f"{self._second[1]} - {request_id} - MonitoringLogger - INFO - MEMORY | "
                    f"{name} | SUCCESS | {duration:.3f}s | Current: {format_bytes(rss)} | "
                    f"Change: {format_change(rss - start_rss)}\n")
            os.write(self._file, line.encode("utf-8"))
            _request_id.reset(token)
