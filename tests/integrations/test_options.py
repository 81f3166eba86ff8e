"""Options are checked when a middleware is created, with messages saying what is accepted;
importing the integrations package imports no web framework."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette

from sherlock_ai.integrations import RequestOptions
from sherlock_ai.integrations.asgi import SherlockMiddleware, instrument_app
from sherlock_ai.integrations.flask import Sherlock
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware


async def _asgi_app(scope, receive, send):
    return None


def _wsgi_app(environ, start_response):
    start_response("200 OK", [])
    return [b""]


def _build_each(**options):
    """Build every integration with ``options`` and return the errors raised."""
    errors = []
    makers = [
        lambda: SherlockMiddleware(_asgi_app, **options),
        lambda: instrument_app(Starlette(), **options),
        lambda: SherlockWSGIMiddleware(_wsgi_app, **options),
        lambda: Sherlock(Flask("opts"), **options),
        lambda: Sherlock(**options),
    ]
    for make in makers:
        with pytest.raises((TypeError, ValueError)) as caught:
            make()
        errors.append(caught.value)
    return errors


BAD = [
    ({"header_name": ""}, ValueError, "header_name must be an HTTP header name"),
    ({"header_name": "X Request"}, ValueError, "header_name must be an HTTP header name"),
    ({"header_name": "X-Id\r\n"}, ValueError, "header_name must be an HTTP header name"),
    ({"header_name": b"X-Request-ID"}, ValueError, "header_name must be an HTTP header name"),
    ({"trust_incoming_id": "yes"}, TypeError, "trust_incoming_id must be True or False"),
    ({"echo_header": 1}, TypeError, "echo_header must be True or False"),
    ({"trace_malloc": None}, TypeError, "trace_malloc must be True or False"),
    ({"id_generator": "uuid4"}, TypeError, "id_generator must be a callable"),
    ({"min_duration": -1}, ValueError, "min_duration must be >= 0"),
    ({"min_duration": float("nan")}, ValueError, "min_duration must be >= 0"),
    ({"min_duration": "0.1"}, TypeError, "min_duration must be a number"),
    ({"exclude_paths": "/health"}, TypeError, "exclude_paths must be an iterable of paths"),
    ({"exclude_paths": ["health"]}, ValueError, "starting with '/'"),
    ({"leak_detection": "on"}, TypeError, "leak_detection must be True or False"),
    ({"leak_settings": {"trace_share": 0.1}}, ValueError, "only apply with leak_detection=True"),
    ({"leak_detection": True, "leak_settings": [("trace_share", 0.1)]}, TypeError,
     "leak_settings must be a mapping"),
    ({"leak_detection": True, "leak_settings": {"share": 0.1}}, TypeError,
     "unknown LeakWatch setting(s) share; accepted: trace_share"),
    ({"leak_detection": True, "leak_settings": {"trace_share": 2}}, ValueError,
     "trace_share must be a number in (0, 1]"),
    ({"exclude_paths": [3]}, ValueError, "starting with '/'"),
    ({"header": "X-Id"}, TypeError,
     "unknown option(s) header; accepted: header_name, trust_incoming_id"),
]


@pytest.mark.parametrize("options, kind, message", BAD, ids=[str(b[0]) for b in BAD])
def test_bad_option_fails_at_construction_everywhere(options, kind, message):
    for error in _build_each(**options):
        assert isinstance(error, kind)
        assert message in str(error)


def test_good_options_are_normalised():
    options = RequestOptions(exclude_paths=["/health", "/metrics"], min_duration=1)
    assert options.exclude_paths == frozenset({"/health", "/metrics"})
    assert options.min_duration == 1.0 and isinstance(options.min_duration, float)


def test_add_middleware_checks_options_when_starlette_builds_the_stack():
    app = Starlette()
    app.add_middleware(SherlockMiddleware, header_name="bad header")
    transport = httpx.ASGITransport(app=app)

    async def first_request():
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/")

    with pytest.raises(ValueError, match="header_name must be"):
        asyncio.run(first_request())


def test_instrument_app_twice_is_refused():
    app = instrument_app(Starlette())
    with pytest.raises(RuntimeError, match="already"):
        instrument_app(app)


def test_flask_extension_twice_on_one_app_is_refused():
    app = Flask("twice")
    Sherlock(app)
    with pytest.raises(RuntimeError, match="already set up"):
        Sherlock(app)


def test_middlewares_refuse_what_is_not_an_app():
    with pytest.raises(TypeError, match="wraps an ASGI application"):
        SherlockMiddleware(None)
    with pytest.raises(TypeError, match="wraps a WSGI application"):
        SherlockWSGIMiddleware("app")


def test_importing_the_integrations_package_imports_no_framework():
    code = (
        "import sys, sherlock_ai, sherlock_ai.integrations, sherlock_ai.integrations.server_logs\n"
        "heavy = {'flask', 'werkzeug', 'starlette', 'fastapi', 'uvicorn', 'gunicorn', 'httpx'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
