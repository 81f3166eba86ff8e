"""What an ASGI request's line and the server's traceback say about an exception."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse

from sherlock_ai import get_logger
from sherlock_ai.integrations.asgi import SherlockMiddleware, instrument_app
from web_support import SUPPORT, asgi_call, get, server

UVICORN_SERVER = str(SUPPORT / "uvicorn_server.py")


class Unprintable(Exception):
    """An exception that cannot describe itself."""

    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def failing_app() -> FastAPI:
    app = FastAPI()

    @app.get("/divide/{n}")
    async def divide(n: int):
        return {"result": 1 / n}

    @app.get("/unprintable")
    async def unprintable():
        raise Unprintable()

    @app.get("/stream")
    async def stream():
        async def chunks():
            yield b"first chunk"
            await asyncio.sleep(0)
            raise Unprintable()

        return StreamingResponse(chunks())

    return app


def memory(records):
    return [r for r in records.records if r.getMessage().startswith("MEMORY | ")]


def test_an_unprintable_exception_under_add_middleware_keeps_its_record(records):
    app = failing_app()
    app.add_middleware(SherlockMiddleware)
    assert get(app, "/unprintable").status_code == 500
    (record,) = memory(records)
    assert record.getMessage().startswith("MEMORY | GET /unprintable | ERROR | ")
    assert record.getMessage().endswith(" | Error: Unprintable")
    assert record.sherlock.attributes["error_type"] == "Unprintable"


def test_an_unprintable_exception_raised_mid_stream_keeps_its_record(records):
    app = instrument_app(failing_app())
    response = get(app, "/stream")
    assert response.status_code == 200 and response.content.startswith(b"first chunk")
    (record,) = memory(records)
    assert record.getMessage().startswith("MEMORY | GET /stream | ERROR | ")
    assert record.getMessage().endswith(" | Error: Unprintable")


def test_the_500_line_names_the_exception_with_instrument_app(records):
    response = get(instrument_app(failing_app()), "/divide/0")
    assert response.status_code == 500
    (record,) = memory(records)
    assert record.getMessage().startswith("MEMORY | GET /divide/{n} | ERROR | ")
    assert record.getMessage().endswith(
        " | Error: HTTP 500 (ZeroDivisionError: division by zero)")
    assert record.request_id == response.headers["X-Request-ID"]
    assert record.sherlock.attributes["status_code"] == 500


def test_the_500_line_of_an_unprintable_exception_names_its_type(records):
    response = get(instrument_app(failing_app()), "/unprintable")
    assert response.status_code == 500
    (record,) = memory(records)
    assert record.getMessage().endswith(" | Error: HTTP 500 (Unprintable)")


def test_a_5xx_sent_while_no_exception_is_handled_says_only_the_status(records):
    app = failing_app()

    @app.get("/busy")
    async def busy():
        try:
            {}["missing"]
        except KeyError:
            pass  # handled and over before the response is sent
        return PlainTextResponse("busy", status_code=503)

    app = instrument_app(app)
    assert get(app, "/busy").status_code == 503
    try:
        raise LookupError("the caller's own")
    except LookupError:
        assert get(app, "/busy").status_code == 503  # an in-process caller, mid-except
    assert [r.getMessage().rsplit(" | ", 1)[1] for r in memory(records)] == [
        "Error: HTTP 503", "Error: HTTP 503"]


def test_an_exception_handlers_500_names_the_exception_it_handles(records):
    app = failing_app()

    @app.exception_handler(ZeroDivisionError)
    async def sorry(request, exc):
        get_logger("app.errors").warning("handled %s", type(exc).__name__)
        return PlainTextResponse("sorry", status_code=500)

    assert get(instrument_app(app), "/divide/0").text == "sorry"
    (record,) = memory(records)
    assert record.getMessage().endswith(
        " | Error: HTTP 500 (ZeroDivisionError: division by zero)")


def test_the_traceback_that_escapes_the_middleware_carries_the_request_id(root_records):
    app = instrument_app(failing_app(), trust_incoming_id=True)
    headers = [(b"x-request-id", b"escaped-1")]
    # What a server does with an exception the app raised: log it, outside the request.
    try:
        asyncio.run(asgi_call(app, "/divide/0", headers=headers))
    except ZeroDivisionError as exc:
        get_logger("server").error("Exception in ASGI application", exc_info=exc)
    get_logger("server").error("no exception here")
    traceback, plain = root_records.named("server")
    assert traceback.exc_info[0] is ZeroDivisionError
    assert traceback.request_id == "escaped-1"
    assert plain.request_id == "-"


@pytest.mark.servers
def test_under_uvicorn_the_traceback_in_the_errors_file_carries_the_echoed_id(tmp_path):
    logs = tmp_path / "logs"
    with server(UVICORN_SERVER, "--text-logs", str(logs), cwd=tmp_path) as uvicorn:
        # One connection each: uvicorn closes the connection of a request whose app raised.
        failed = httpx.get(uvicorn.url + "/divide/0", timeout=30)
        served = httpx.get(uvicorn.url + "/divide/4", timeout=30)
    assert failed.status_code == 500 and served.json() == {"result": 0.25}
    request_id = failed.headers["X-Request-ID"]
    errors = (logs / "errors.log").read_text(encoding="utf-8")
    (traceback_line,) = [line for line in errors.splitlines()
                         if line.endswith(" - ERROR - Exception in ASGI application")]
    assert f" - {request_id} - uvicorn.error - " in traceback_line
    assert "ZeroDivisionError: division by zero" in errors
    memory_lines = [line for line in errors.splitlines() if " - MonitoringLogger - " in line]
    (memory_line,) = memory_lines
    assert f" - {request_id} - MonitoringLogger - ERROR - MEMORY | GET /divide/{{n}} | ERROR" \
        in memory_line
    assert memory_line.endswith("Error: HTTP 500 (ZeroDivisionError: division by zero)")


@pytest.mark.servers
def test_under_uvicorns_own_handlers_the_traceback_carries_the_echoed_id(tmp_path):
    # uvicorn_log_config(): uvicorn's handlers and layout with %(request_id)s, no sherlock_ai
    # files; the id comes from the record factory the middleware installed.
    with server(UVICORN_SERVER, "--server-log-config", cwd=tmp_path) as uvicorn:
        failed = httpx.get(uvicorn.url + "/divide/0", timeout=30)
        stderr = uvicorn.err
    request_id = failed.headers["X-Request-ID"]
    (traceback_line,) = [line for line in stderr.read_text().splitlines()
                         if line.endswith(" - ERROR - Exception in ASGI application")]
    assert f" - {request_id} - uvicorn.error - " in traceback_line


def test_a_500_counts_in_the_leak_watch_after_its_exception_reached_the_server(records):
    # The server closes a keep-alive connection once the exception reaches it: the longer that
    # takes after the response went out, the more clients have sent their next request on the
    # connection and see it fail. The line is written at once (span attributes and metrics
    # read the measurement while the request's span is open); the leak watch's work (counting,
    # now and then a heap snapshot) comes in the next step of the event loop.
    app = instrument_app(failing_app(), leak_detection=True)
    at_the_server = []

    async def server(scope, receive, send):
        try:
            await app(scope, receive, send)
        except ZeroDivisionError:
            watch = app.middleware_stack.leak_watch
            at_the_server.append((len(memory(records)), watch.route_count))
            raise

    async def serve_one():
        with pytest.raises(ZeroDivisionError):
            await asgi_call(server, "/divide/0")
        await asyncio.sleep(0)  # the loop's next step

    asyncio.run(serve_one())
    (record,) = memory(records)
    assert record.getMessage().endswith(
        " | Error: HTTP 500 (ZeroDivisionError: division by zero)")
    assert at_the_server == [(1, 0)]
    assert app.middleware_stack.leak_watch.route_count == 1
