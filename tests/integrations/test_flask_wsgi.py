"""The Flask extension and the WSGI middleware: ids, route rules, errors, streamed bodies,
threads."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from flask import Flask, Response, abort, stream_with_context
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import Client

import sherlock_ai
from sherlock_ai import get_logger, monitor_memory
from sherlock_ai.consumers import Consumer, add_consumer, remove_consumer
from sherlock_ai.engine.span import current_span
from sherlock_ai.integrations.flask import Sherlock
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware

log = get_logger("app.flask")


class ClosingClient(FlaskClient):
    """Flask's test client closing each response body, as WSGI servers do (the stock client
    only closes buffered responses)."""

    def open(self, *args, buffered=True, **kwargs):
        return super().open(*args, buffered=buffered, **kwargs)


def flask_app(name: str) -> Flask:
    app = Flask(name)
    app.test_client_class = ClosingClient
    return app


def create_app(**options) -> Flask:
    app = flask_app("shop")

    @app.get("/items/<int:item_id>")
    def read_item(item_id):
        log.info("item %d", item_id)
        return {"item_id": item_id, "id": sherlock_ai.get_request_id()}

    @app.get("/unavailable")
    def unavailable():
        abort(503)

    @app.get("/boom")
    def boom():
        return 1 / 0

    @app.get("/decorated")
    @monitor_memory(trace_malloc=False)
    def decorated():
        return {"id": sherlock_ai.get_request_id()}

    @app.get("/health")
    def health():
        return {"id": sherlock_ai.get_request_id()}

    Sherlock(app, **{"trust_incoming_id": True, **options})
    return app


def memory(records):
    return [r for r in records.records if r.getMessage().startswith("MEMORY | ")]


def test_the_extension_registers_itself_and_names_requests_by_rule(records):
    app = create_app()
    assert isinstance(app.extensions["sherlock_ai"], Sherlock)
    client = app.test_client()
    response = client.get("/items/3")
    assert response.json["id"] == response.headers["X-Request-ID"]
    (record,) = memory(records)
    assert record.getMessage().startswith("MEMORY | GET /items/<int:item_id> | SUCCESS | ")
    assert record.request_id == response.headers["X-Request-ID"]
    assert record.sherlock.attributes == {
        "method": "GET", "route": "/items/<int:item_id>", "status_code": 200}


def test_the_app_factory_pattern_instruments_each_app():
    sherlock = Sherlock(header_name="X-Trace", trust_incoming_id=True)
    first, second = flask_app("one"), flask_app("two")
    for app in (first, second):
        app.add_url_rule("/", "index", lambda: sherlock_ai.get_request_id())
        sherlock.init_app(app)
    for app in (first, second):
        response = app.test_client().get("/", headers={"X-Trace": "factory-1"})
        assert response.text == "factory-1" and response.headers["X-Trace"] == "factory-1"
        assert app.extensions["sherlock_ai"] is sherlock


def test_unmatched_paths_and_odd_methods_are_bounded(records):
    client = create_app().test_client()
    assert client.get("/no/such/" + "x" * 300).status_code == 404
    assert client.open("/items/1", method="BREW").status_code == 405
    assert [line.split(" | ")[1] for line in records.messages()] == [
        "GET <unmatched>", "OTHER <unmatched>"]


@pytest.mark.parametrize("incoming, trusted", [
    ("abc-123", True), ("a" * 128, True), ("a" * 129, False), ("a b", False),
    ("abc\r\nMEMORY | forged", False), ("<b>x</b>", False), ("", False), ("x" * 5000, False),
    ("r\u00e9sum\u00e9", False),
])
def test_incoming_ids_are_trusted_only_when_valid(incoming, trusted, records):
    client = create_app().test_client()
    response = client.get("/items/1", environ_overrides={"HTTP_X_REQUEST_ID": incoming})
    echoed = response.headers["X-Request-ID"]
    assert (echoed == incoming) is trusted
    assert sherlock_ai.is_valid_request_id(echoed)
    assert response.json["id"] == echoed
    (record,) = memory(records)
    assert record.request_id == echoed
    assert trusted or not incoming or incoming not in record.getMessage()


def test_5xx_responses_are_errors_with_their_cause(records, root_records):
    client = create_app().test_client()
    assert client.get("/unavailable").status_code == 503
    response = client.get("/boom")
    assert response.status_code == 500
    unavailable, boom = memory(records)
    assert unavailable.levelname == "ERROR"
    assert unavailable.getMessage().endswith("| Error: HTTP 503")
    assert boom.getMessage().startswith("MEMORY | GET /boom | ERROR | ")
    assert boom.getMessage().endswith("| Error: HTTP 500 (ZeroDivisionError: division by zero)")
    assert boom.request_id == response.headers["X-Request-ID"]
    (flask_error,) = [r for r in root_records.records if r.name == "shop"]
    assert flask_error.request_id == response.headers["X-Request-ID"]


def test_a_propagated_exception_passes_through_unchanged(records):
    app = create_app()
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ZeroDivisionError):
        app.test_client().get("/boom")
    (record,) = memory(records)
    assert record.getMessage().endswith("| Error: ZeroDivisionError: division by zero")
    assert record.sherlock.attributes["error_type"] == "ZeroDivisionError"
    assert sherlock_ai.get_request_id() == ""


def test_decorated_views_log_inside_the_request(records):
    response = create_app().test_client().get("/decorated")
    lines = [(r.request_id, r.getMessage().split(" | ")[1], r.sherlock.concurrent)
             for r in records.records]
    request_id = response.headers["X-Request-ID"]
    assert lines == [(request_id, f"{__name__}.create_app.<locals>.decorated", 0),
                     (request_id, "GET /decorated", 0)]


def test_excluded_paths_get_an_id_but_no_line(records):
    client = create_app(exclude_paths=["/health"]).test_client()
    response = client.get("/health", headers={"X-Request-ID": "probe-2"})
    assert response.json["id"] == "probe-2" and response.headers["X-Request-ID"] == "probe-2"
    assert records.messages() == []


def streaming_app(events):
    app = flask_app("stream")

    @app.get("/stream/<name>")
    def stream(name):
        def chunks():
            for number in range(3):
                events.append(f"{name} chunk {number} {sherlock_ai.get_request_id()}")
                yield f"{number},"
        return Response(stream_with_context(chunks()))

    Sherlock(app, trust_incoming_id=True)
    return app


def test_a_streamed_body_is_measured_until_close_in_the_requests_context(records):
    events = []

    class Told:
        def measurement_ended(self, measurement):
            events.append(f"measured {measurement.request_id}")

    app = streaming_app(events)
    told = add_consumer(Told())
    try:
        response = app.test_client().get("/stream/s", headers={"X-Request-ID": "flask-s"})
    finally:
        remove_consumer(told)
    assert response.text == "0,1,2,"
    assert events == ["s chunk 0 flask-s", "s chunk 1 flask-s", "s chunk 2 flask-s",
                      "measured flask-s"]
    assert records.messages()[0].startswith("MEMORY | GET /stream/<name> | SUCCESS")


def test_a_body_closed_before_its_end_is_an_error(records):
    app = streaming_app([])
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/stream/c", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"}
    body = app.wsgi_app(environ, lambda status, headers, exc_info=None: None)
    assert next(iter(body)) == b"0,"
    body.close()
    (line,) = records.messages()
    assert line.startswith("MEMORY | GET /stream/<name> | ERROR")
    assert "client disconnected before the response was complete" in line
    assert current_span() is None and sherlock_ai.get_request_id() == ""


def test_a_plain_wsgi_app_is_measured_and_can_name_its_route(records):
    def wsgi_app(environ, start_response):
        if environ["PATH_INFO"].startswith("/orders/"):
            environ["sherlock_ai.route"] = "/orders/{id}"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [sherlock_ai.get_request_id().encode()]

    client = Client(SherlockWSGIMiddleware(wsgi_app, trust_incoming_id=True))
    named = client.get("/orders/7", headers={"X-Request-ID": "plain-1"}, buffered=True)
    client.get("/elsewhere", buffered=True)
    assert named.text == "plain-1" and named.headers["X-Request-ID"] == "plain-1"
    assert [line.split(" | ")[1] for line in records.messages()] == [
        "GET /orders/{id}", "GET <unmatched>"]


def test_the_json_record_carries_flask_method_route_status_and_id(tmp_path):
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=tmp_path, log_format_type="json", console_enabled=False))
    create_app().test_client().get("/items/9", headers={"X-Request-ID": "fj-1"})
    sherlock_ai.SherlockAI.cleanup()
    (line,) = [json.loads(x) for x in (tmp_path / "monitoring.jsonl").read_text().splitlines()]
    assert (line["method"], line["route"], line["status_code"], line["request_id"]) == (
        "GET", "/items/<int:item_id>", 200, "fj-1")


def test_consumers_see_wsgi_requests_start_and_end():
    events = []

    class Recorder(Consumer):
        def request_started(self, request):
            events.append(("start", request.protocol))

        def measurement_ended(self, measurement):
            events.append(("end", measurement.protocol, measurement.name))

    recorder = add_consumer(Recorder())
    try:
        create_app().test_client().get("/items/2")
    finally:
        remove_consumer(recorder)
    assert events == [("start", "wsgi"), ("end", "wsgi", "GET /items/<int:item_id>")]


def test_a_pool_thread_that_served_a_request_keeps_no_id_or_span():
    client = create_app().test_client()

    def serve_then_look():
        response = client.get("/items/4", headers={"X-Request-ID": "pool-1"})
        return (response.json["id"], threading.get_ident(), sherlock_ai.get_request_id(),
                current_span())

    def look():
        return threading.get_ident(), sherlock_ai.get_request_id(), current_span()

    with ThreadPoolExecutor(max_workers=1) as pool:
        served_id, thread, id_after, span_after = pool.submit(serve_then_look).result()
        later = pool.submit(look).result()
    assert served_id == "pool-1"
    assert (id_after, span_after) == ("", None)
    assert later == (thread, "", None)


@pytest.mark.servers
def test_a_threaded_server_keeps_concurrent_requests_apart(root_records, records):
    app = Flask("threaded")

    @app.get("/work/<int:n>")
    def work(n):
        log.info("start %d", n)
        time.sleep(random.random() / 200)
        log.info("end %d", n)
        return {"n": n, "id": sherlock_ai.get_request_id(), "thread": threading.get_ident()}

    Sherlock(app, trust_incoming_id=True)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with httpx.Client(base_url=url, timeout=30) as client, \
                ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(lambda n: client.get(f"/work/{n}"), range(120)))
    finally:
        server.shutdown()
        thread.join(timeout=10)
    id_of = {}
    for response in responses:
        assert response.status_code == 200
        assert response.json()["id"] == response.headers["X-Request-ID"]
        id_of[response.json()["n"]] = response.json()["id"]
    assert len(set(id_of.values())) == 120
    assert len({r.json()["thread"] for r in responses}) > 1
    mine = root_records.named("app.flask")
    assert len(mine) == 240
    assert all(record.request_id == id_of[record.args[0]] for record in mine)
    assert sorted(r.request_id for r in memory(records)) == sorted(id_of.values())


def test_consumers_see_the_connection_each_request_came_on():
    # Werkzeug's server gives REMOTE_ADDR and REMOTE_PORT: the key of the client's end.
    seen = []

    class Recorder(Consumer):
        def request_started(self, request):
            seen.append(request.connection)

    server = make_server("127.0.0.1", 0, SherlockWSGIMiddleware(create_app().wsgi_app))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorder = add_consumer(Recorder())
    ports = []
    try:
        for item in range(2):
            connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
            connection.connect()
            ports.append(connection.sock.getsockname()[1])
            connection.request("GET", f"/items/{item}")
            assert connection.getresponse().read()
            connection.close()
    finally:
        remove_consumer(recorder)
        server.shutdown()
        thread.join(timeout=10)
    assert seen == [("127.0.0.1", ports[0]), ("127.0.0.1", ports[1])]
