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


@pytest.mark.servers
def test_importing_the_integrations_package_imports_no_framework():
    code = (
        "import sys, sherlock_ai, sherlock_ai.integrations, sherlock_ai.integrations.server_logs\n"
        "heavy = {'flask', 'werkzeug', 'starlette', 'fastapi', 'uvicorn', 'gunicorn', 'httpx'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture()
def checks(monkeypatch):
    """Counts how many times options and leak settings are checked."""
    from sherlock_ai import LeakWatchSettings

    counted = {"options": 0, "leak settings": 0}
    for cls, key in ((RequestOptions, "options"), (LeakWatchSettings, "leak settings")):
        original = cls.__post_init__

        def counting(self, original=original, key=key):
            counted[key] += 1
            original(self)

        monkeypatch.setattr(cls, "__post_init__", counting)
    return counted


LEAKS = {"leak_detection": True, "leak_settings": {"warmup_requests": 10_000}}


def test_each_integration_checks_its_options_once(checks):
    SherlockMiddleware(_asgi_app, min_duration=0.5, **LEAKS)
    assert checks == {"options": 1, "leak settings": 1}
    app = instrument_app(Starlette(), min_duration=0.5, **LEAKS)
    app.build_middleware_stack()
    assert checks == {"options": 2, "leak settings": 2}
    SherlockWSGIMiddleware(_wsgi_app, min_duration=0.5, **LEAKS)
    assert checks == {"options": 3, "leak settings": 3}
    sherlock = Sherlock(min_duration=0.5, **LEAKS)
    sherlock.init_app(Flask("once-a"))
    sherlock.init_app(Flask("once-b"))
    assert checks == {"options": 4, "leak settings": 4}


def test_the_checked_options_object_is_what_every_layer_keeps():
    options = RequestOptions(header_name="X-Trace", exclude_paths=["/health"], **LEAKS)
    assert SherlockMiddleware(_asgi_app, options=options).options is options
    assert SherlockWSGIMiddleware(_wsgi_app, options=options).options is options
    app = instrument_app(Starlette(), options=options)
    assert app.build_middleware_stack().options is options
    sherlock = Sherlock(options=options)
    flask_app = Flask("kept")
    sherlock.init_app(flask_app)
    assert sherlock.options is options and flask_app.wsgi_app.options is options
    watch = flask_app.wsgi_app.leak_watch
    assert watch is not None and watch.settings is options.leak_settings
    assert options.leak_settings.warmup_requests == 10_000


def test_keywords_replace_fields_of_a_given_options_object():
    base = RequestOptions(header_name="X-Trace", min_duration=1)
    middleware = SherlockMiddleware(_asgi_app, options=base, min_duration=0.25)
    assert middleware.options.header_name == "X-Trace"
    assert middleware.options.min_duration == 0.25 and base.min_duration == 1.0
    with pytest.raises(TypeError, match="unknown option.s. header; accepted: header_name"):
        SherlockWSGIMiddleware(_wsgi_app, options=base, header="X-Id")
    with pytest.raises(ValueError, match="min_duration must be >= 0"):
        Sherlock(options=base, min_duration=-1)


def test_options_must_be_a_request_options():
    for make in (lambda: SherlockMiddleware(_asgi_app, options={"header_name": "X-Id"}),
                 lambda: instrument_app(Starlette(), options={"header_name": "X-Id"}),
                 lambda: Sherlock(options="X-Id")):
        with pytest.raises(TypeError, match="options must be a RequestOptions"):
            make()


def test_the_keyword_names_and_types_are_those_of_the_options():
    from dataclasses import fields

    from sherlock_ai.integrations import RequestKeywords

    keywords = {name: getattr(kind, "__forward_arg__", kind)
                for name, kind in RequestKeywords.__annotations__.items()}
    assert keywords == {f.name: f.type for f in fields(RequestOptions)}


def test_a_leak_watch_takes_checked_settings_or_keywords_not_both():
    from sherlock_ai import LeakWatch, LeakWatchSettings

    settings = LeakWatchSettings(trace_share=0.01)
    assert LeakWatch(settings=settings).settings is settings
    assert LeakWatch(trace_share=0.01).settings == settings
    with pytest.raises(TypeError, match="not both"):
        LeakWatch(settings=settings, trace_share=0.5)
    with pytest.raises(TypeError, match="not both"):
        LeakWatch(settings={"trace_share": 0.5})
