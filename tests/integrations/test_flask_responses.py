"""The Flask extension with Flask's stock test client (which does not close responses), its
preserved contexts (``with client:``), ``stream_with_context``, ``send_file`` and exceptions
that cannot describe themselves."""

from __future__ import annotations

import gc
import wsgiref.simple_server

import flask
import httpx
import pytest
from flask import Flask, Response, send_file, stream_with_context
from flask.globals import request_ctx

import sherlock_ai
from sherlock_ai.integrations.flask import Sherlock

from .test_wsgi_responses import (
    NOT_CLOSED,
    SendfileHandler,
    Unprintable,
    no_other_block_is_open,
    wsgiref_server,
)


def memory_lines(records):
    return records.messages("MEMORY | ")


def make_app() -> Flask:
    app = Flask("contexts")
    app.config.update(TESTING=True, SECRET_KEY="test key")
    return app


def test_unclosed_test_client_responses_are_logged_once_each_as_success(records):
    app = make_app()

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return {"item_id": item_id}

    Sherlock(app)
    client = app.test_client()
    responses = [client.get(f"/items/{n}") for n in range(20)]
    assert [r.json["item_id"] for r in responses] == list(range(20))
    lines = [r for r in records.records if r.getMessage().startswith("MEMORY | ")]
    assert len(lines) == 20
    assert all(r.getMessage().startswith("MEMORY | GET /items/<int:item_id> | SUCCESS | ")
               for r in lines)
    assert [r.sherlock.concurrent for r in lines] == [0] * 20
    assert [r.request_id for r in lines] == [r.headers["X-Request-ID"] for r in responses]
    assert no_other_block_is_open()


def streaming_app() -> Flask:
    app = make_app()

    @app.get("/stream")
    def stream():
        def chunks():
            yield "a,"
            yield sherlock_ai.get_request_id()
        return Response(stream_with_context(chunks()))

    Sherlock(app, trust_incoming_id=True)
    return app


def test_a_streamed_response_read_but_never_closed_ends_when_collected(records):
    client = streaming_app().test_client()
    response = client.get("/stream", headers={"X-Request-ID": "unclosed-1"})
    assert response.text == "a,unclosed-1"
    assert memory_lines(records) == [] and not no_other_block_is_open()
    del response
    gc.collect()
    (line,) = records.wait_for(1)
    assert line.startswith("MEMORY | GET /stream | ERROR | ")
    assert line.endswith("| Error: " + NOT_CLOSED)
    assert no_other_block_is_open()


def test_a_streamed_response_closed_by_the_test_is_a_success(records):
    client = streaming_app().test_client()
    with client.get("/stream") as response:
        assert response.text.startswith("a,")
    (line,) = memory_lines(records)
    assert line.startswith("MEMORY | GET /stream | SUCCESS | ")


def test_preserved_contexts_and_stream_with_context_in_async_and_sync_views(records):
    # Modelled on Flask's own TestStreaming.test_async_view.
    app = make_app()

    @app.route("/async")
    async def async_view():
        flask.session["test"] = "flask"

        @stream_with_context
        def gen():
            yield flask.session["test"]
        return Response(gen())

    @app.route("/sync")
    def sync_view():
        flask.session["test"] = "sync"

        @stream_with_context
        def gen():
            yield flask.session["test"] + sherlock_ai.get_request_id()
        return Response(gen())

    Sherlock(app, trust_incoming_id=True)
    client = app.test_client()
    client.get("/async").close()
    assert client.get("/async").text == "flask"
    with client:
        client.get("/async").close()
    with client:
        assert client.get("/async").text == "flask"
    with client:
        response = client.get("/sync", headers={"X-Request-ID": "sync-1"})
        assert response.text == "syncsync-1"
        assert flask.request.path == "/sync"
    response.close()
    assert not flask.has_request_context()
    gc.collect()
    lines = records.wait_for(5)
    assert sorted(line.split(" | ")[1] for line in lines) == ["GET /async"] * 4 + ["GET /sync"]
    assert no_other_block_is_open()


def test_closing_a_response_after_the_client_block_pops_only_its_contexts(records):
    # Modelled on Flask's own test_client_pop_all_preserved.
    app = make_app()

    @app.route("/")
    def index():
        # stream_with_context pushes a third context, preserved by the response
        return stream_with_context("hello")

    Sherlock(app)
    client = app.test_client()
    with app.test_request_context() as outer:
        with client:
            response = client.get("/")
        response.close()
        assert request_ctx._get_current_object() is outer
    (line,) = memory_lines(records)
    assert line.startswith("MEMORY | GET / | ERROR | ")  # closed unread
    assert line.endswith("| Error: client disconnected before the response was complete"
                         " (the server closed the response before its end)")


@pytest.mark.servers
def test_send_file_keeps_the_servers_file_wrapper(tmp_path, monkeypatch, records):
    (tmp_path / "report.txt").write_bytes(b"r" * 50_000)
    app = make_app()

    @app.get("/report")
    def report():
        return send_file(tmp_path / "report.txt")

    Sherlock(app, trust_incoming_id=True)
    with wsgiref_server(app, monkeypatch) as url:
        response = httpx.get(url + "/report", headers={"X-Request-ID": "report-1"})
    assert response.content == b"r" * 50_000 and response.headers["X-Request-ID"] == "report-1"
    (body,) = SendfileHandler.sendfile_bodies
    assert isinstance(body, wsgiref.util.FileWrapper)
    (record,) = [r for r in records.records if r.getMessage().startswith("MEMORY | ")]
    assert record.getMessage().startswith("MEMORY | GET /report | SUCCESS | ")
    assert record.request_id == "report-1"
    assert no_other_block_is_open()


def undescribable_app() -> Flask:
    app = make_app()

    @app.get("/unprintable/<int:n>")
    def unprintable(n):
        raise Unprintable()

    Sherlock(app)
    return app


def test_a_500_from_an_undescribable_exception_keeps_its_name_and_record(records):
    app = undescribable_app()
    app.config["TESTING"] = False
    with app.test_client().get("/unprintable/1") as response:
        assert response.status_code == 500 and b"Internal Server Error" in response.data
    (line,) = memory_lines(records)
    assert line.startswith("MEMORY | GET /unprintable/<int:n> | ERROR | ")
    assert line.endswith("| Error: HTTP 500 (Unprintable)")


def test_a_propagated_undescribable_exception_keeps_its_name_and_record(records):
    app = undescribable_app()
    with pytest.raises(Unprintable):
        app.test_client().get("/unprintable/2")
    (record,) = [r for r in records.records if r.getMessage().startswith("MEMORY | ")]
    assert record.getMessage().startswith("MEMORY | GET /unprintable/<int:n> | ERROR | ")
    assert record.getMessage().endswith("| Error: Unprintable")
