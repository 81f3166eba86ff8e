"""What the Django integration adds to one Django request, in process CPU time, against a bare
Django request of the same run: a one-route project driven in process (no network) through
Django's own handlers, WSGI (``WSGIHandler``, a sync view) and ASGI (``ASGIHandler``, an async
view), every case measured in turn in each round; beside them, in the WSGI rounds, what the
ASGI middleware adds to a Starlette request.

Run: ``python -m benchmarks.run_all --only bench_django`` (or ``make bench`` for all).
"""

from __future__ import annotations

import asyncio
import gc
import io
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

from benchmarks.common import OpcodeCount, asgi_request_driver, table
from benchmarks.middleware_cases import fresh_folder, installed

ROOT = Path(__file__).resolve().parent.parent
MIDDLEWARE = "sherlock_ai.integrations.django.SherlockMiddleware"
# A case: (label, MIDDLEWARE of its handler, SHERLOCK_AI applied before each of its rounds).
Case = Tuple[str, List[str], Dict[str, Any]]

#: The project's URL patterns (Django reads them from this module, see :func:`configure`).
urlpatterns: List[Any] = []


class EmptyMiddleware:
    """A middleware that does nothing, sync and async capable: what any middleware costs in
    Django's chain."""

    sync_capable = async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)


def configure() -> None:
    """Django set up once in this process: the app installed, ``LOGGING`` left alone, and two
    routes answering a short text, ``/items/<int:pk>/`` (sync) and ``/async/<int:pk>/``."""
    import django
    from django.conf import settings
    from django.http import HttpResponse
    from django.urls import path

    def item(request: Any, pk: int) -> Any:
        return HttpResponse(f"item {pk}")

    async def async_item(request: Any, pk: int) -> Any:
        return HttpResponse(f"item {pk}")

    urlpatterns[:] = [path("items/<int:pk>/", item), path("async/<int:pk>/", async_item)]
    settings.configure(
        DEBUG=False, SECRET_KEY="benchmarks-only", ALLOWED_HOSTS=["bench"],
        ROOT_URLCONF=__name__, INSTALLED_APPS=["sherlock_ai.integrations.django"],
        MIDDLEWARE=[], DATABASES={}, USE_TZ=True, LOGGING_CONFIG=None,
        SHERLOCK_AI={"configure_logging": False})
    django.setup()


def cases() -> List[Case]:
    """The cases, bare first. sherlock_ai's console is off so nothing reaches the terminal."""
    return [
        ("bare Django", [], {"configure_logging": False}),
        ("one empty middleware", [f"{__name__}.EmptyMiddleware"], {"configure_logging": False}),
        ("sherlock_ai, default set-up (app.log + monitoring.log)", [MIDDLEWARE],
         {"console_enabled": False}),
        ("sherlock_ai, one text file (monitoring.log)", [MIDDLEWARE],
         {"console_enabled": False, "log_files": {"app": {"enabled": False},
                                                  "errors": {"enabled": False}}}),
        ("sherlock_ai, no line (min_duration above every request)", [MIDDLEWARE],
         {"console_enabled": False, "min_duration": 60.0}),
    ]


def apply(value: Dict[str, Any]) -> Callable[[], None]:
    """A set-up applying ``value`` as ``SHERLOCK_AI``, its files in a fresh folder."""
    from django.apps import apps

    def set_up() -> None:
        logged = {} if value.get("configure_logging") is False else {"logs_dir": fresh_folder()}
        apps.get_app_config("sherlock_ai").apply({**value, **logged})

    return set_up


def handler(kind: str, middleware: List[str]) -> Any:
    """A ``WSGIHandler`` or ``ASGIHandler`` loading ``middleware``."""
    from django.conf import settings
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.wsgi import WSGIHandler

    settings.MIDDLEWARE = middleware
    return WSGIHandler() if kind == "wsgi" else ASGIHandler()


def wsgi_request(app: Any, path: str) -> Callable[[], None]:
    """One in-process WSGI request to ``app``, its response closed as a server does."""

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        return None

    def one() -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SCRIPT_NAME": "",
                   "QUERY_STRING": "", "SERVER_NAME": "bench", "SERVER_PORT": "80",
                   "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "bench",
                   "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http"}
        response = app(environ, start_response)
        for _ in response:
            pass
        response.close()

    return one


def asgi_request(app: Any, path: str) -> Callable[[], Awaitable[None]]:
    """One in-process ASGI request to ``app``. Unlike :func:`benchmarks.common.
    asgi_request_driver`'s, ``receive`` waits after the body, as a server's does until the
    client goes away: Django listens for that disconnect while it serves the request."""
    body = {"type": "http.request", "body": b"", "more_body": False}

    async def one() -> None:
        sent = False

        async def receive() -> Dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return body
            await asyncio.Event().wait()  # cancelled by Django once the response is sent
            return {"type": "http.disconnect"}  # pragma: no cover

        async def send(message: Dict[str, Any]) -> None:
            return None

        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                   "method": "GET", "scheme": "http", "path": path,
                   "raw_path": path.encode(), "root_path": "", "query_string": b"",
                   "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 5000),
                   "server": ("127.0.0.1", 8000)}, receive, send)

    return one


def cpu_us(measured: Sequence[Tuple[Callable[[], Any], Callable[[], None]]], number: int,
           rounds: int) -> List[List[float]]:
    """Mean process CPU time of one request for each ``(request, set_up)``, in microseconds,
    one figure per round (each round measures every case in turn, set up before). ``request``
    returns ``None``, or an awaitable (run in one event loop for the whole measurement)."""

    async def measure() -> List[List[float]]:
        per_round: List[List[float]] = [[] for _ in measured]
        for _ in range(rounds):
            for i, (one, set_up) in enumerate(measured):
                set_up()
                for _ in range(200):  # warm-up
                    await _done(one())
                gc.collect()
                start = time.process_time()
                for _ in range(number):
                    await _done(one())
                per_round[i].append((time.process_time() - start) / number * 1e6)
        return per_round

    return asyncio.run(measure())


async def _done(result: Any) -> None:
    if result is not None:
        await result


def opcodes(one: Callable[[], None], set_up: Callable[[], None], number: int = 20) -> float:
    """Bytecode instructions (:class:`OpcodeCount`) one WSGI request executes, after a
    warm-up."""
    set_up()
    for _ in range(50):
        one()
    with OpcodeCount() as counted:
        for _ in range(number):
            one()
    return counted.count / number


Row = Tuple[str, List[float], Optional[float]]


#: The ASGI middleware's cases of ``bench_middleware`` measured in the WSGI rounds, so that
#: what it adds to a Starlette request compares with what the Django integration adds.
STARLETTE_CASES = ("bare", "default")


def measure(kind: str, number: int, rounds: int,
            starlette: bool = False) -> Tuple[List[Row], List[Row]]:
    """(label, CPU µs per request in each round, bytecodes per request under WSGI) per case,
    under ``kind`` (wsgi or asgi); then the same for :data:`STARLETTE_CASES` when
    ``starlette``, measured in the same rounds."""
    defined = cases()
    request = wsgi_request if kind == "wsgi" else asgi_request
    path = "/items/1/" if kind == "wsgi" else "/async/1/"
    measured: List[Tuple[Callable[[], Any], Callable[[], None]]] = [
        (request(handler(kind, middleware), path), apply(value))
        for _, middleware, value in defined]
    labels = [label for label, _, _ in defined]
    if starlette:
        from benchmarks.middleware_cases import cases as starlette_cases
        from benchmarks.middleware_cases import starlette_app

        for key in STARLETTE_CASES:
            label, (set_up, wrap) = starlette_cases()[key]
            labels.append(label)
            measured.append((asgi_request_driver(wrap(starlette_app()), "/items/1"), set_up))
    figures = cpu_us(measured, number, rounds)
    counts = [opcodes(*case) if kind == "wsgi" and i < len(defined) else None
              for i, case in enumerate(measured)]
    rows = list(zip(labels, figures, counts))
    return rows[:len(defined)], rows[len(defined):]


def request_table(rows: List[Row]) -> str:
    """One row per case: the median over rounds of its CPU time, of what it adds over the
    bare request of the same round, and of that as a share of the bare request (its range);
    the bytecodes of one request when counted."""
    bare = rows[0][1]
    counted = any(count is not None for _, _, count in rows)
    body: List[Tuple[Any, ...]] = []
    for label, figures, count in rows:
        shares = [(f - b) / b for f, b in zip(figures, bare)]
        body.append((label, statistics.median(figures),
                     statistics.median([f - b for f, b in zip(figures, bare)]),
                     f"{statistics.median(shares):.0%}",
                     f"{min(shares):.0%} to {max(shares):.0%}")
                    if figures is not bare else
                    (label, statistics.median(figures), "", "", ""))
        if counted:
            body[-1] += (f"{count:,.0f}",)
    return table(["case", "CPU µs / request", "added µs", "added ÷ bare request",
                  "range over rounds"] + (["bytecodes / request"] if counted else []), body)


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_django.md)."""
    number, rounds = (300, 3) if quick else (3_000, 9)
    missing: Optional[str] = None if installed("django") else "Django is not installed here."
    if missing is None:
        configure()
        django_rows, starlette_rows = measure("wsgi", number, rounds, starlette=True)
        wsgi, starlette = request_table(django_rows), request_table(starlette_rows)
        asgi = request_table(measure("asgi", number // 3, rounds)[0])
    else:
        wsgi = asgi = starlette = missing
    return {"rounds": str(rounds), "requests_per_round": f"{number:,}",
            "asgi_requests_per_round": f"{number // 3:,}", "wsgi": wsgi, "asgi": asgi,
            "starlette": starlette}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(run(quick="--quick" in sys.argv))
