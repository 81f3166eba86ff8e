"""One MEMORY measurement per ASGI request: its name, status, window and what ends it."""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import logging
import socket
import threading
import time

import pytest
import uvicorn
from fastapi import BackgroundTasks, FastAPI, HTTPException
from fastapi.responses import StreamingResponse
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, Router
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

import sherlock_ai
from sherlock_ai import get_logger
from sherlock_ai.consumers import Consumer, add_consumer, remove_consumer
from sherlock_ai.engine import tracing
from sherlock_ai.engine.span import current_span
from sherlock_ai.integrations.asgi import SherlockMiddleware, instrument_app
from web_support import asgi_call, asgi_client, get, run


def items_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def read_item(item_id: int):
        return {"item_id": item_id}

    @app.post("/items")
    async def create_item():
        return {}

    @app.get("/unavailable")
    async def unavailable():
        raise HTTPException(status_code=503, detail="down")

    @app.get("/missing")
    async def missing():
        raise HTTPException(status_code=404)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("boom in handler")

    return app


def memory(records):
    return [r for r in records.records if r.getMessage().startswith("MEMORY | ")]


def test_each_request_is_one_line_named_by_method_and_route_template(records):
    app = instrument_app(items_app())
    for item in (1, 2, 3):
        get(app, f"/items/{item}")
    lines = records.messages("MEMORY")
    assert len(lines) == 3
    assert all(line.startswith("MEMORY | GET /items/{item_id} | SUCCESS | ") for line in lines)
    assert all(" | Current: " in line and " | Change: " in line for line in lines)
    assert [r.sherlock.attributes for r in memory(records)] == [
        {"method": "GET", "route": "/items/{item_id}", "status_code": 200}] * 3


def test_unmatched_paths_share_one_bounded_name(records):
    app = instrument_app(items_app())
    for path in ("/nope", "/wp-admin/../../etc/passwd", "/x" * 500, "/%0d%0aMEMORY"):
        assert get(app, path).status_code == 404
    assert records.messages("MEMORY") and all(
        line.startswith("MEMORY | GET <unmatched> | SUCCESS") for line in records.messages())


@pytest.mark.parametrize("method, expected", [
    ("BREW", "OTHER /items/{item_id}"),
    ("G" * 300, "OTHER /items/{item_id}"),
    ("get", "OTHER /items/{item_id}"),
    ("DELETE", "DELETE /items/{item_id}"),
])
def test_only_standard_methods_reach_the_name(method, expected, records):
    exchange = run(asgi_call(instrument_app(items_app()), "/items/1", method=method))
    assert exchange.status == 405
    (record,) = memory(records)
    assert record.getMessage().startswith(f"MEMORY | {expected} | SUCCESS")
    assert record.sherlock.attributes["method"] == expected.split()[0]


def test_starlette_routes_keep_their_templates(records):
    async def user(request):
        return PlainTextResponse("u")

    async def raw_asgi(scope, receive, send):
        await PlainTextResponse("raw")(scope, receive, send)

    app = Starlette(routes=[
        Route("/users/{user_id:int}", user, methods=["GET", "PUT"]),
        Mount("/api", routes=[Route("/orders/{order}", user)]),
        Mount("/files", app=raw_asgi),
    ])
    app.add_middleware(SherlockMiddleware)
    for path in ("/users/7", "/api/orders/1", "/files/a/b.txt", "/api/none"):
        get(app, path)
    assert [line.split(" | ")[1] for line in records.messages()] == [
        "GET /users/{user_id:int}", "GET /api/orders/{order}", "GET /files/{path}",
        "GET <unmatched>"]


class ForgetsRoute:
    """What Starlette before 1.0 leaves in the scope: the endpoint, not ``scope["route"]``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def forgetful_send(message):
            scope.pop("route", None)
            await send(message)

        await self.app(scope, receive, forgetful_send)


def test_routes_are_found_from_the_endpoint_when_the_router_leaves_none(records):
    async def user(request):
        return PlainTextResponse("u")

    async def shared(request):
        return PlainTextResponse("s")

    app = Starlette(routes=[
        Route("/users/{user_id:int}", user),
        Route("/a/{x}", shared), Route("/b/{y}", shared),
        Mount("/api", routes=[Route("/orders/{order}", user)]),
    ])
    app = SherlockMiddleware(ForgetsRoute(app))
    for path in ("/users/7", "/a/1", "/b/2", "/b/3", "/api/orders/1", "/nowhere"):
        get(app, path)
    assert [line.split(" | ")[1] for line in records.messages()] == [
        "GET /users/{user_id:int}", "GET /a/{x}", "GET /b/{y}", "GET /b/{y}",
        "GET /api/orders/{order}", "GET <unmatched>"]


def test_mounted_apps_are_named_by_their_mount_templates(records):
    async def thing(request):
        return PlainTextResponse("t")

    async def raw_asgi(scope, receive, send):
        await PlainTextResponse("raw")(scope, receive, send)

    admin = Router(routes=[Route("/users/{uid}", thing)])
    v1 = FastAPI()
    v1.mount("/admin", admin)

    @v1.get("/things/{t}")
    async def v1_thing(t: str):
        return {}

    app = FastAPI()
    app.mount("/v1", v1)
    app.mount("/tenants/{tenant}", Router(routes=[Route("/orders/{order}", thing)]))
    app.mount("/raw", raw_asgi)
    app = instrument_app(app)
    for path in ("/v1/things/a", "/v1/admin/users/9", "/tenants/acme/orders/5",
                 "/tenants/other/orders/6", "/raw/some/file.txt", "/v1/nothing"):
        get(app, path)
    assert [line.split(" | ")[1] for line in records.messages()] == [
        "GET /v1/things/{t}", "GET /v1/admin/users/{uid}", "GET /tenants/{tenant}/orders/{order}",
        "GET /tenants/{tenant}/orders/{order}", "GET /raw/{path}", "GET <unmatched>"]


def test_a_server_root_path_is_not_part_of_the_route(records):
    exchange = run(asgi_call(instrument_app(items_app()), "/items/4", root_path="/api"))
    assert exchange.status == 200
    assert records.messages()[0].startswith("MEMORY | GET /items/{item_id} | SUCCESS")


def test_5xx_responses_are_errors_and_4xx_are_not(records):
    app = instrument_app(items_app())
    assert get(app, "/unavailable").status_code == 503
    assert get(app, "/missing").status_code == 404
    unavailable, missing = memory(records)
    assert unavailable.levelname == "ERROR"
    assert unavailable.getMessage().startswith("MEMORY | GET /unavailable | ERROR | ")
    assert unavailable.getMessage().endswith(" | Error: HTTP 503")
    assert missing.levelname == "INFO" and " | SUCCESS | " in missing.getMessage()


@pytest.mark.parametrize("install", ["instrument_app", "wrapping"])
def test_an_unhandled_exception_gives_a_500_with_the_id_and_an_error_line(install, records):
    app = instrument_app(items_app()) if install == "instrument_app" \
        else SherlockMiddleware(items_app())
    response = get(app, "/boom")
    assert response.status_code == 500
    request_id = response.headers["X-Request-ID"]
    (record,) = memory(records)
    assert record.levelname == "ERROR" and record.request_id == request_id
    assert record.getMessage().startswith("MEMORY | GET /boom | ERROR | ")
    assert record.sherlock.attributes["status_code"] == 500


def test_creating_a_middleware_leaves_the_record_factory_alone():
    before = logging.getLogRecordFactory()
    SherlockMiddleware(items_app())
    instrument_app(items_app())
    assert logging.getLogRecordFactory() is before


def test_an_exception_handler_logs_the_traceback_with_the_id(root_records):
    app = items_app()

    @app.exception_handler(Exception)
    async def log_unhandled(request, exc):
        get_logger("app.errors").exception("unhandled error")
        return PlainTextResponse("sorry", status_code=500)

    response = get(instrument_app(app), "/boom")
    assert response.status_code == 500 and response.text == "sorry"
    (logged,) = root_records.named("app.errors")
    assert logged.request_id == response.headers["X-Request-ID"]
    assert logged.exc_info[0] is RuntimeError


def test_a_trailing_slash_redirect_is_unmatched(records):
    exchange = run(asgi_call(instrument_app(items_app()), "/items/3/"))
    assert exchange.status == 307
    assert records.messages()[0].startswith("MEMORY | GET <unmatched> | SUCCESS")


def test_add_middleware_sees_the_exception_but_not_the_500_starlette_builds(records):
    app = items_app()
    app.add_middleware(SherlockMiddleware)
    response = get(app, "/boom")
    assert response.status_code == 500
    assert "X-Request-ID" not in response.headers
    (record,) = memory(records)
    assert record.levelname == "ERROR" and sherlock_ai.is_valid_request_id(record.request_id)
    assert record.getMessage().endswith(" | Error: RuntimeError: boom in handler")
    assert record.sherlock.attributes["error_type"] == "RuntimeError"
    assert record.sherlock.attributes["status_code"] is None


def test_the_json_record_carries_method_route_status_and_id(tmp_path):
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=tmp_path, log_format_type="json", console_enabled=False))
    app = instrument_app(items_app(), trust_incoming_id=True)
    response = get(app, "/items/5", headers={"X-Request-ID": "json-1"})
    get(app, "/unavailable", headers={"X-Request-ID": "json-2"})
    sherlock_ai.SherlockAI.cleanup()
    lines = [json.loads(x) for x in (tmp_path / "monitoring.jsonl").read_text().splitlines()]
    assert response.status_code == 200
    ok, failed = lines
    assert (ok["name"], ok["method"], ok["route"], ok["status_code"], ok["request_id"],
            ok["status"]) == ("GET /items/{item_id}", "GET", "/items/{item_id}", 200, "json-1",
                              "SUCCESS")
    assert (failed["status_code"], failed["status"], failed["error"], failed["level"]) == (
        503, "ERROR", "HTTP 503", "ERROR")
    assert isinstance(ok["rss"], int) and isinstance(ok["rss_change"], int)


def test_min_duration_drops_fast_successes_but_never_errors(records):
    app = instrument_app(items_app(), min_duration=60.0)
    get(app, "/items/1")
    get(app, "/unavailable")
    assert [line.split(" | ")[1:3] for line in records.messages()] == [
        ["GET /unavailable", "ERROR"]]


def streaming_app(events, retained, **options):
    app = FastAPI()

    @app.get("/stream")
    async def stream(background: BackgroundTasks):
        async def chunks():
            for number in range(3):
                events.append(f"chunk {number}")
                if number == 2:
                    retained.append(bytearray(4 * 1024 * 1024))
                yield b"x" * 10
                await asyncio.sleep(0)

        background.add_task(lambda: events.append(
            f"background sees {sherlock_ai.get_request_id()}"))
        return StreamingResponse(chunks(), background=background)

    return instrument_app(app, **{"trust_incoming_id": True, **options})


def test_a_streamed_response_is_measured_until_its_last_chunk(records):
    events, retained = [], []

    class Told:
        def measurement_ended(self, measurement):
            events.append(f"measured {measurement.request_id}")

    told = add_consumer(Told())
    try:
        response = get(streaming_app(events, retained, trace_malloc=True), "/stream",
                       headers={"X-Request-ID": "stream-1"})
    finally:
        remove_consumer(told)
    assert response.content == b"x" * 30
    assert events == ["chunk 0", "chunk 1", "chunk 2", "measured stream-1",
                      "background sees stream-1"]
    (record,) = memory(records)
    assert record.sherlock.traced >= 4 * 1024 * 1024
    assert record.sherlock.traced_peak >= record.sherlock.traced


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_a_client_disconnect_mid_stream_ends_the_measurement_as_error(spec_version, records):
    produced = []
    app = FastAPI()

    @app.get("/endless")
    async def endless():
        async def chunks():
            for number in range(10_000):
                produced.append(number)
                yield b"chunk"
                await asyncio.sleep(0)

        return StreamingResponse(chunks())

    app = instrument_app(app)

    async def disconnecting_client():
        try:
            await asgi_call(app, "/endless", disconnect_after_chunks=3,
                            spec_version=spec_version)
        except ClientDisconnect:
            assert spec_version == "2.4"  # Starlette's own signal on such servers
        return current_span(), sherlock_ai.get_request_id()

    span_after, id_after = run(disconnecting_client())
    assert (span_after, id_after) == (None, "")
    assert len(produced) < 100
    (record,) = memory(records)
    assert record.levelname == "ERROR"
    assert record.getMessage().startswith("MEMORY | GET /endless | ERROR | ")
    assert record.getMessage().endswith(
        "| Error: client disconnected before the response was complete")
    assert record.sherlock.attributes["status_code"] == 200


def test_an_app_that_returns_without_a_complete_response_is_an_error(records):
    async def half(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})

    run(asgi_call(SherlockMiddleware(half), "/"))
    (line,) = records.messages()
    assert line.startswith("MEMORY | GET <unmatched> | ERROR")
    assert "returned without completing the response" in line


def test_an_asgi2_application_is_served():
    class LegacyApp:
        def __init__(self, scope):
            self.scope = scope

        async def __call__(self, receive, send):
            body = sherlock_ai.get_request_id().encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

    response = get(SherlockMiddleware(LegacyApp, trust_incoming_id=True), "/",
                   headers={"X-Request-ID": "legacy-1"})
    assert response.content == b"legacy-1"
    assert response.headers["X-Request-ID"] == "legacy-1"


def test_websockets_work_and_get_an_id_and_lifespan_passes_through(records):
    seen = {}

    async def lifespan(app):
        seen["startup id"] = sherlock_ai.get_request_id()
        yield
        seen["shutdown"] = True

    async def echo(websocket: WebSocket):
        await websocket.accept()
        message = await websocket.receive_text()
        await websocket.send_text(f"{message} {sherlock_ai.get_request_id()}")
        await websocket.close()

    app = FastAPI(lifespan=lifespan)
    app.add_api_websocket_route("/ws", echo)
    with TestClient(instrument_app(app, trust_incoming_id=True)) as client:
        with client.websocket_connect("/ws", headers={"X-Request-ID": "ws-1"}) as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "hello ws-1"
            assert (b"x-request-id", b"ws-1") in ws.extra_headers
        with client.websocket_connect("/ws", headers={"X-Request-ID": "bad id"}) as ws:
            ws.send_text("hi")
            answer = ws.receive_text().split()
            assert answer[0] == "hi" and sherlock_ai.is_valid_request_id(answer[1])
    assert seen == {"startup id": "", "shutdown": True}
    assert records.messages("MEMORY") == []


def test_two_sherlock_layers_give_one_id_and_one_line(records):
    app = items_app()
    app.add_middleware(SherlockMiddleware)
    response = get(SherlockMiddleware(app), "/items/1")
    (record,) = memory(records)
    assert record.request_id == response.headers["X-Request-ID"]


class Recorder(Consumer):
    def __init__(self):
        self.events = []

    def request_started(self, request):
        self.events.append(("start", request.protocol))

    def measurement_ended(self, measurement):
        self.events.append(("end", measurement.protocol, measurement.name,
                            measurement.below_threshold))


def test_a_consumer_sees_each_measured_request_start_and_end_once():
    recorder = Recorder()
    add_consumer(recorder)
    try:
        app = instrument_app(items_app(), exclude_paths=["/missing"])
        get(app, "/items/3")
        get(app, "/missing")
        quiet = instrument_app(items_app(), min_duration=60.0)
        get(quiet, "/items/4")
    finally:
        remove_consumer(recorder)
    get(app, "/items/5")
    # The fast request under min_duration writes no line, but its start has its end.
    assert recorder.events == [
        ("start", "asgi"), ("end", "asgi", "GET /items/{item_id}", False),
        ("start", "asgi"), ("end", "asgi", "GET /items/{item_id}", True)]


def test_a_failing_consumer_does_not_affect_requests(capsys):
    class Broken(Consumer):
        def request_started(self, request):
            raise RuntimeError("consumer broke")

    broken = add_consumer(Broken())
    try:
        assert get(instrument_app(items_app()), "/items/1").json() == {"item_id": 1}
    finally:
        remove_consumer(broken)
    assert capsys.readouterr().err.count("consumer broke") == 1


def test_trace_malloc_holds_one_tracemalloc_lease_for_the_middlewares_lifetime(records):
    gc.collect()  # middlewares of earlier tests give their leases back
    before = tracing.leases()
    app = items_app()
    middleware = SherlockMiddleware(app, trace_malloc=True)
    assert tracing.leases() == before
    for item in range(3):
        get(middleware, f"/items/{item}")
        assert tracing.leases() == before + 1
    assert all(r.sherlock.traced is not None for r in memory(records))
    del middleware
    gc.collect()
    assert tracing.leases() == before


@pytest.mark.parametrize("read", ["sherlock_ai.engine.requests.current_rss",  # at the start
                                  "sherlock_ai.engine.span.current_rss"])  # at the end
def test_a_tracker_failure_never_changes_the_response(monkeypatch, read):
    def broken_rss():
        raise OSError("no /proc")

    app = instrument_app(items_app())
    monkeypatch.setattr(read, broken_rss)
    response = get(app, "/items/8")
    assert response.status_code == 200 and response.json() == {"item_id": 8}
    assert sherlock_ai.is_valid_request_id(response.headers["X-Request-ID"])


def test_requests_in_one_task_leave_no_span_or_id_behind():
    app = instrument_app(items_app())

    async def many():
        async with asgi_client(app) as client:
            for item in range(5):
                await client.get(f"/items/{item}")
                assert current_span() is None and sherlock_ai.get_request_id() == ""
        await asgi_call(streaming_app([], []), "/stream")
        return current_span(), sherlock_ai.get_request_id()

    assert run(many()) == (None, "")


def test_consumers_see_the_connection_each_request_came_on():
    # uvicorn gives the client's address and port in the scope: requests on one keep-alive
    # connection share its key, another connection has its own.
    seen = []

    class Recorder(Consumer):
        def request_started(self, request):
            seen.append(request.connection)

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(instrument_app(items_app()), log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    recorder = add_consumer(Recorder())
    ports = []
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        for requests in (2, 1):
            connection = http.client.HTTPConnection(*listening.getsockname(), timeout=30)
            connection.connect()
            ports.append(connection.sock.getsockname()[1])
            for item in range(requests):
                connection.request("GET", f"/items/{item}")
                assert connection.getresponse().read() == b'{"item_id":%d}' % item
            connection.close()
    finally:
        remove_consumer(recorder)
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()
    first, second = ("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])
    assert seen == [first, first, second]
