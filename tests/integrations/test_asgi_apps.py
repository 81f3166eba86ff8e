"""What SherlockMiddleware can wrap: ASGI 3 apps of every shape (Starlette's endpoint classes
included) and ASGI 2 apps."""

from __future__ import annotations

from starlette.endpoints import HTTPEndpoint, WebSocketEndpoint
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

import sherlock_ai
from sherlock_ai.integrations.asgi import SherlockMiddleware
from web_support import get


class Hello(HTTPEndpoint):
    async def get(self, request):
        return PlainTextResponse(f"hello {sherlock_ai.get_request_id()}")

    async def post(self, request):
        return PlainTextResponse("posted", status_code=201)


class Echo(WebSocketEndpoint):
    encoding = "text"

    async def on_receive(self, websocket, data):
        await websocket.send_text(f"{data} {sherlock_ai.get_request_id()}")


def test_a_starlette_http_endpoint_class_is_wrapped_as_an_asgi3_app(records):
    app = SherlockMiddleware(Hello, trust_incoming_id=True)
    response = get(app, "/", headers={"X-Request-ID": "endpoint-1"})
    assert response.status_code == 200 and response.text == "hello endpoint-1"
    assert response.headers["X-Request-ID"] == "endpoint-1"
    (line,) = records.messages("MEMORY")
    assert line.startswith("MEMORY | GET <unmatched> | SUCCESS | ")
    client = TestClient(SherlockMiddleware(Hello))  # no lifespan: endpoints refuse it
    assert client.post("/").status_code == 201
    assert client.put("/").status_code == 405  # the endpoint's own answer


def test_a_starlette_websocket_endpoint_class_is_wrapped_as_an_asgi3_app(records):
    client = TestClient(SherlockMiddleware(Echo, trust_incoming_id=True))
    with client.websocket_connect("/", headers={"X-Request-ID": "ws-endpoint"}) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi ws-endpoint"
        assert (b"x-request-id", b"ws-endpoint") in ws.extra_headers
    assert records.messages("MEMORY") == []


def test_an_asgi3_instance_and_function_are_called_as_they_are():
    async def function_app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"function"})

    class InstanceApp:
        async def __call__(self, scope, receive, send):
            await function_app(scope, receive, send)

    assert get(SherlockMiddleware(function_app), "/").content == b"function"
    assert get(SherlockMiddleware(InstanceApp()), "/").content == b"function"
