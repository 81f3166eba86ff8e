"""Hostile requests (property-based): arbitrary id header bytes, many duplicate id headers,
hostile paths and methods, through raw ASGI calls, a raw WSGI environ and Flask. No exception
escapes, only a valid id is echoed, and no log line or JSON field is forged."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from typing import List, Tuple

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import sherlock_ai
from sherlock_ai import JsonFormatter
from sherlock_ai.integrations.asgi import SherlockMiddleware
from sherlock_ai.integrations.flask import Sherlock
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware
from sherlock_ai.logs.records import install_request_id_factory
from web_support import asgi_call

JSON_KEYS = {"timestamp", "level", "logger", "pid", "message", "request_id", "kind", "name",
             "status", "duration", "concurrent", "rss", "rss_change", "method", "route",
             "status_code", "error", "error_type"}
ids = st.one_of(st.binary(max_size=300), st.binary(min_size=5_000, max_size=10_000),
                st.sampled_from([b"abc\r\nMEMORY | forged", b"ok-id\x00", b"\xff\xfe",
                                 b"<script>", b"", b" ", b"a" * 129]))
paths = st.one_of(
    st.text(max_size=300).map(lambda t: "/" + t),
    st.sampled_from(["/x\nMEMORY | forged", "/%0d%0aforged", "/../../etc/passwd",
                     "/" + "a" * 20_000, "/\u2028x", "/items/\x1b[31mred"]),
)
methods = st.one_of(st.sampled_from(["GET", "POST", "PATCH"]),
                    st.text(min_size=1, max_size=40))


class Lines:
    """The text and JSON lines of every record logged while a request ran."""

    def __enter__(self) -> Lines:
        install_request_id_factory()
        self.text, self.json = io.StringIO(), io.StringIO()
        self.handlers = [logging.StreamHandler(self.text), logging.StreamHandler(self.json)]
        self.handlers[0].setFormatter(logging.Formatter("%(request_id)s %(message)s"))
        self.handlers[1].setFormatter(JsonFormatter())
        root = logging.getLogger()
        self.level = root.level
        root.setLevel(logging.INFO)
        for handler in self.handlers:
            root.addHandler(handler)
        return self

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
        root.setLevel(self.level)

    def check(self, hostile: List[str], records: int) -> None:
        text_lines = self.text.getvalue().splitlines()
        assert len(text_lines) == records, text_lines
        # A value made of digits, signs and dots ("+0.0") can be our own figures' text
        # ("Change: +0.00B"), not the value echoed: only the others are looked for.
        telling = [h for h in hostile if len(h) > 3 and not h.isalnum()
                   and not _FIGURE_LIKE.fullmatch(h)]
        for line in text_lines:
            assert not any(h in line for h in telling), (line, telling)
        objects = [json.loads(line) for line in self.json.getvalue().splitlines()]
        assert len(objects) == records
        for obj in objects:
            assert set(obj) <= JSON_KEYS, set(obj) - JSON_KEYS


_FIGURE_LIKE = re.compile(r"[-+0-9.]+")


def echoed_ok(echoed: bytes, sent: List[bytes]) -> None:
    value = echoed.decode("latin-1")
    assert sherlock_ai.is_valid_request_id(value)
    valid_sent = [s for s in sent if sherlock_ai.is_valid_request_id(s.decode("latin-1"))]
    if not valid_sent:
        assert echoed not in sent


def starlette_app() -> SherlockMiddleware:
    async def item(request):
        return PlainTextResponse("ok")

    return SherlockMiddleware(Starlette(routes=[Route("/items/{item_id}", item)]))


ASGI_APP = starlette_app()
hostile_settings = settings(max_examples=60, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])


@hostile_settings
@given(sent=st.lists(ids, min_size=1, max_size=40), path=paths, method=methods)
def test_asgi_hostile_requests(sent, path, method):
    headers: List[Tuple[bytes, bytes]] = [(b"x-request-id", value) for value in sent]
    with Lines() as lines:
        exchange = asyncio.run(asgi_call(ASGI_APP, path, method=method, headers=headers))
    assert exchange.status in (200, 404, 405)
    echoed_ok(exchange.header(b"x-request-id"), sent)
    lines.check([path, method] + [s.decode("latin-1") for s in sent], records=1)


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


WSGI_APP = SherlockWSGIMiddleware(wsgi_app)
FLASK = Flask("hostile")
FLASK.add_url_rule("/items/<int:n>", "item", lambda n: "ok")
Sherlock(FLASK)


def environ(path: str, method: str, value: bytes) -> dict:
    # WSGI servers hand headers and paths over as latin-1 decoded str.
    return {"REQUEST_METHOD": method, "PATH_INFO": path.encode("utf-8", "surrogateescape")
            .decode("latin-1"), "SCRIPT_NAME": "", "QUERY_STRING": "", "SERVER_NAME": "t",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0),
            "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "HTTP_X_REQUEST_ID": value.decode("latin-1")}


def call_wsgi(app, env: dict) -> Tuple[str, dict, bytes]:
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    body = app(env, start_response)
    try:
        data = b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close:
            close()
    return seen["status"], dict((k.lower(), v) for k, v in seen["headers"]), data


@hostile_settings
@given(value=ids, path=paths, method=methods, flask=st.booleans())
def test_wsgi_and_flask_hostile_requests(value, path, method, flask):
    app = FLASK.wsgi_app if flask else WSGI_APP
    with Lines() as lines:
        status, headers, _ = call_wsgi(app, environ(path, method, value))
    assert status[:3].isdigit()
    echoed_ok(headers["x-request-id"].encode("latin-1"), [value])
    lines.check([path, method, value.decode("latin-1")], records=1)
