"""The Flask extension does not change an app's lifetime: an instrumented app is freed as soon
as nothing refers to it, without waiting for the cycle collector (as Flask's own test suite
checks for a bare app)."""

from __future__ import annotations

import gc
import weakref
from typing import Callable, Iterator

import pytest
from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import EnvironBuilder

from sherlock_ai.integrations.flask import Sherlock


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    """Only reference counting frees objects while the test runs."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _app() -> Flask:
    app = Flask("lifetime")

    @app.get("/items/<int:item_id>")
    def read_item(item_id: int) -> dict:
        return {"item_id": item_id}

    @app.get("/stream")
    def stream() -> Response:
        return Response(iter([b"a", b"b"]))

    return app


def _served_and_dropped(install: Callable[[Flask], None]) -> weakref.ref:
    """Build an app, let ``install`` instrument it, serve requests, drop every reference."""
    app = _app()
    install(app)
    client = app.test_client()
    response = client.get("/items/3")
    assert response.json == {"item_id": 3}
    assert "X-Request-ID" in response.headers
    with client.get("/stream") as streamed:
        assert streamed.data == b"ab"
    weak = weakref.ref(app)
    del app, client, response, streamed
    return weak


@pytest.mark.parametrize("options", [{}, {"leak_detection": True}], ids=["plain", "leaks"])
def test_an_app_with_the_extension_is_freed_on_zero_refcount(no_cycle_collector, records,
                                                             options):
    weak = _served_and_dropped(lambda app: Sherlock(app, **options))
    assert weak() is None
    assert [m.split(" | ")[1] for m in records.messages()] == ["GET /items/<int:item_id>",
                                                               "GET /stream"]


def test_the_app_factory_pattern_keeps_no_app_alive(no_cycle_collector, records):
    sherlock = Sherlock(leak_detection=True)
    weak = _served_and_dropped(sherlock.init_app)
    assert weak() is None
    assert sherlock.leak_watch is not None
    assert len(records.messages()) == 2
    # The extension outlives the app and instruments the next one.
    assert _served_and_dropped(sherlock.init_app)() is None
    assert len(records.messages()) == 4


def test_a_middleware_installed_first_keeps_its_own_behaviour(records):
    # ProxyFix(app.wsgi_app) holds the app strongly (a cycle of the user's own); the extension
    # wraps it as it is and the request goes through both.
    def install(app: Flask) -> None:
        app.wsgi_app = ProxyFix(app.wsgi_app)  # type: ignore[method-assign]
        Sherlock(app)

    app = _app()
    install(app)
    response = app.test_client().get("/items/3", headers={"X-Forwarded-For": "10.0.0.1"})
    assert response.json == {"item_id": 3}
    assert isinstance(app.wsgi_app.app, ProxyFix)  # type: ignore[attr-defined]
    assert [m.split(" | ")[1] for m in records.messages()] == ["GET /items/<int:item_id>"]


def test_the_wsgi_app_of_a_freed_app_says_so(no_cycle_collector):
    # The extension holds the app weakly: serving app.wsgi_app without keeping the app fails
    # with an error naming the fix instead of serving a dead app.
    app = _app()
    Sherlock(app)
    wsgi = app.wsgi_app
    del app
    with pytest.raises(ReferenceError, match="keep a reference to the Flask app"):
        wsgi(EnvironBuilder("/items/3").get_environ(), lambda *args: None)


def test_an_unclosed_error_page_is_collected_and_measured(records):
    # The exception behind a 500 has a traceback whose frames reach the response body: kept in
    # the environ, it kept the body alive forever, so its measurement never ended.
    app = _app()
    app.testing = False
    app.logger.disabled = True

    @app.get("/boom")
    def boom() -> str:
        return str(1 / 0)

    Sherlock(app)
    response = app.test_client().get("/boom")  # the stock client does not close it
    assert response.status_code == 500
    del response
    gc.collect()
    (message,) = records.wait_for(1)
    assert message.startswith("MEMORY | GET /boom | ERROR | ")
    assert message.endswith("Error: HTTP 500 (ZeroDivisionError: division by zero); the response "
                            "was never closed (measured until it was garbage collected)")
