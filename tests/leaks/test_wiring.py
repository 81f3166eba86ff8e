"""leak_detection=True gives each integration a LeakWatch that counts measured requests by
route template; excluded paths and websockets stay out of it."""

from __future__ import annotations

from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from sherlock_ai import LeakWatch
from sherlock_ai.integrations.asgi import SherlockMiddleware
from sherlock_ai.integrations.flask import Sherlock
from web_support import asgi_client, run


async def item(request):
    return PlainTextResponse(request.path_params["item_id"])


async def health(request):
    return PlainTextResponse("ok")


async def echo(websocket):
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()


def starlette_app():
    return Starlette(routes=[Route("/items/{item_id}", item), Route("/health", health),
                             WebSocketRoute("/ws", echo)])


def test_leak_watch_is_off_unless_asked():
    assert SherlockMiddleware(starlette_app()).leak_watch is None
    assert Sherlock(Flask("off")).leak_watch is None


def test_asgi_counts_measured_requests_per_route_template():
    app = SherlockMiddleware(starlette_app(), leak_detection=True,
                             leak_settings={"warmup_requests": 10_000},
                             exclude_paths=["/health"])
    watch = app.leak_watch
    assert isinstance(watch, LeakWatch) and watch.settings.warmup_requests == 10_000

    async def traffic():
        async with asgi_client(app) as client:
            for n in range(20):
                assert (await client.get(f"/items/{n}")).text == str(n)
                assert (await client.get("/health")).text == "ok"
            assert (await client.get("/nowhere")).status_code == 404

    run(traffic())
    assert watch.route_count == 2  # GET /items/{item_id} and GET <unmatched>; not /health


def test_flask_counts_requests_per_rule_with_its_view_function():
    flask_app = Flask("wired")

    @flask_app.get("/items/<int:item_id>")
    def read_item(item_id: int):
        return str(item_id)

    @flask_app.get("/health")
    def health_check():
        return "ok"

    sherlock = Sherlock(flask_app, leak_detection=True, exclude_paths=["/health"])
    assert flask_app.extensions["sherlock_ai_leak_watch"] is sherlock.leak_watch
    client = flask_app.test_client()
    for n in range(5):
        # The measurement ends when the server closes the response, as a WSGI server does.
        with client.get(f"/items/{n}") as response:
            assert response.text == str(n)
        with client.get("/health") as response:
            assert response.text == "ok"
    assert sherlock.leak_watch.route_count == 1
