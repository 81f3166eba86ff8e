"""Request ids in ASGI apps: generated, echoed, trusted when valid, replaced when not, and never
logged or echoed raw."""

from __future__ import annotations

import logging

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import sherlock_ai
from sherlock_ai.integrations.asgi import SherlockMiddleware, instrument_app
from web_support import asgi_call, asgi_client, get, run


def id_app(**options):
    app = FastAPI()

    @app.get("/id")
    async def show_id():
        logging.getLogger("app.ids").info("handling")
        return {"id": sherlock_ai.get_request_id()}

    @app.get("/health")
    async def health():
        return {"id": sherlock_ai.get_request_id()}

    return instrument_app(app, **{"trust_incoming_id": True, **options})


def test_a_request_without_id_gets_a_fresh_one_echoed_and_logged(records):
    app = id_app()
    first, second = get(app, "/id"), get(app, "/id")
    ids = [first.headers["X-Request-ID"], second.headers["X-Request-ID"]]
    assert ids[0] != ids[1]
    assert all(sherlock_ai.is_valid_request_id(i) and len(i) == 16 for i in ids)
    assert [first.json()["id"], second.json()["id"]] == ids
    assert [r.request_id for r in records.records] == ids


VALID = ["abc", "a" * 128, "0af7651916cd43dd8448eb211c80319c", "req.1:2_3-x",
         "550e8400-e29b-41d4-a716-446655440000"]


@pytest.mark.parametrize("incoming", VALID)
def test_a_valid_incoming_id_is_trusted_and_echoed(incoming, records):
    response = get(id_app(), "/id", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming
    assert response.json()["id"] == incoming
    assert records.records[0].request_id == incoming


HOSTILE = {
    "cr-lf": b"abc\r\nMEMORY | forged | SUCCESS",
    "lf": b"abc\ndef",
    "space": b"abc def",
    "non-ascii": "r\u00e9sum\u00e9-\u2603".encode(),
    "markup": b"<script>alert(1)</script>",
    "5000 characters": b"a" * 5000,
    "129 characters": b"a" * 129,
    "empty": b"",
    "quote": b'abc"def',
    "nul": b"abc\x00def",
}


@pytest.mark.parametrize("raw", HOSTILE.values(), ids=HOSTILE.keys())
def test_an_invalid_incoming_id_is_replaced_never_echoed_or_logged(raw, root_records):
    exchange = run(asgi_call(id_app(), "/id", headers=[(b"x-request-id", raw)]))
    echoed = exchange.header(b"x-request-id").decode()
    assert sherlock_ai.is_valid_request_id(echoed)
    assert echoed.encode() != raw
    assert b'"id":"%s"' % echoed.encode() in exchange.body
    text = raw.decode("latin-1")
    in_request = [r for r in root_records.records if r.name in ("app.ids", "MonitoringLogger")]
    assert [r.request_id for r in in_request] == [echoed, echoed]
    for record in root_records.records:
        assert not text or text not in record.getMessage()


def test_untrusted_incoming_ids_are_always_replaced(records):
    response = get(id_app(trust_incoming_id=False), "/id", headers={"X-Request-ID": "abc"})
    assert response.headers["X-Request-ID"] != "abc"
    assert records.records[0].request_id == response.headers["X-Request-ID"]


def test_a_custom_header_name_is_read_and_echoed():
    response = get(id_app(header_name="X-Correlation-ID"), "/id",
                   headers={"X-Correlation-ID": "corr-1", "X-Request-ID": "other"})
    assert response.headers["X-Correlation-ID"] == "corr-1"
    assert "X-Request-ID" not in response.headers


def test_echo_header_false_sends_no_header_but_still_sets_the_id(records):
    response = get(id_app(echo_header=False), "/id", headers={"X-Request-ID": "quiet-1"})
    assert "X-Request-ID" not in response.headers
    assert response.json()["id"] == "quiet-1"
    assert records.records[0].request_id == "quiet-1"


def test_a_custom_generator_makes_the_ids():
    counter = iter(range(1, 100))
    app = id_app(id_generator=lambda: f"svc-{next(counter)}")
    assert [get(app, "/id").headers["X-Request-ID"] for _ in range(2)] == ["svc-1", "svc-2"]


@pytest.mark.parametrize("generator", [lambda: "bad id\n", lambda: 42, lambda: 1 / 0],
                         ids=["invalid text", "not a str", "raises"])
def test_a_broken_generator_falls_back_to_the_default(generator, capsys):
    response = get(id_app(id_generator=generator), "/id")
    assert response.status_code == 200
    assert sherlock_ai.is_valid_request_id(response.headers["X-Request-ID"])
    assert len(response.headers["X-Request-ID"]) == 16


def test_the_echoed_header_replaces_one_the_app_set(records):
    async def endpoint(request):
        return PlainTextResponse("x", headers={"X-Request-ID": "app-chosen"})

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(SherlockMiddleware, trust_incoming_id=True)
    exchange = run(asgi_call(app, "/", headers=[(b"x-request-id", b"client-1")]))
    assert exchange.header(b"x-request-id") == b"client-1"
    assert records.records[0].request_id == "client-1"


def test_a_shared_response_header_list_is_not_modified():
    shared = JSONResponse({"ok": True})
    before = list(shared.raw_headers)

    async def endpoint(request):
        return shared

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(SherlockMiddleware)
    assert get(app, "/").headers["X-Request-ID"] != get(app, "/").headers["X-Request-ID"]
    assert shared.raw_headers == before


def test_excluded_paths_get_an_id_but_no_measurement(records):
    app = id_app(exclude_paths=["/health"])
    response = get(app, "/health", headers={"X-Request-ID": "probe-1"})
    assert response.json()["id"] == "probe-1"
    assert response.headers["X-Request-ID"] == "probe-1"
    assert records.messages("MEMORY") == []
    get(app, "/id")
    assert len(records.messages("MEMORY | GET /id")) == 1


def test_excluded_paths_match_below_a_root_path(records):
    app = id_app(exclude_paths=["/health"])
    exchange = run(asgi_call(app, "/health", root_path="/api"))
    assert exchange.status == 200
    assert records.messages("MEMORY") == []


def test_the_previous_id_is_restored_in_the_task_that_ran_the_request():
    app = id_app()

    async def requests_in_this_task():
        seen = []
        async with asgi_client(app) as client:
            await client.get("/id")
            seen.append(sherlock_ai.get_request_id())
            with sherlock_ai.request_id_context("outer-1"):
                inner = await client.get("/id")
                seen.append(sherlock_ai.get_request_id())
        return seen, inner.json()["id"]

    seen, inner_id = run(requests_in_this_task())
    assert seen == ["", "outer-1"]
    assert inner_id not in ("", "outer-1")


def test_response_headers_given_as_a_one_shot_iterable_are_all_sent(records):
    # ASGI allows any iterable of header pairs: looking through it must not use it up.
    async def app(scope, receive, send):
        pairs = [(b"content-type", b"text/plain"), (b"x-app", b"1")]
        await send({"type": "http.response.start", "status": 200,
                    "headers": (pair for pair in pairs)})
        await send({"type": "http.response.body", "body": b"ok"})

    exchange = run(asgi_call(SherlockMiddleware(app), "/"))
    assert exchange.header(b"content-type") == b"text/plain"
    assert exchange.header(b"x-app") == b"1"
    assert sherlock_ai.is_valid_request_id(exchange.header(b"x-request-id").decode())
    assert len(records.messages("MEMORY")) == 1
