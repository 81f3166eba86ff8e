"""Request ids that read as "no request" are refused, incoming ids are not trusted unless asked,
the id and the open measurement reach threads and executors through ``carry_context``, and
``exclude_paths`` takes prefixes; each with FastAPI (ASGI), Flask and a plain WSGI app."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import FastAPI
from flask import Flask
from werkzeug.test import Client

import sherlock_ai
from sherlock_ai import carry_context, monitor_memory
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.integrations.flask import Sherlock
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware
from web_support import asgi_call, get, run

log = logging.getLogger("app.ids")


def asgi_app(**options):
    app = FastAPI()

    @app.get("/{path:path}")
    async def anything(path: str):
        log.info("handling")
        return {"id": sherlock_ai.get_request_id()}

    return instrument_app(app, **options)


def flask_app(**options):
    app = Flask("ids", static_folder=None)

    @app.get("/", defaults={"path": ""})
    @app.get("/<path:path>")
    def anything(path):
        log.info("handling")
        return {"id": sherlock_ai.get_request_id()}

    Sherlock(app, **options)
    return app


def asgi_get(path, headers=None, **options):
    response = get(asgi_app(**options), path, headers=headers)
    return response.headers.get("X-Request-ID"), response.json()["id"]


def flask_get(path, headers=None, **options):
    # buffered: the client reads and closes the response, as a server does.
    response = flask_app(**options).test_client().get(path, headers=headers or {},
                                                      buffered=True)
    return response.headers.get("X-Request-ID"), response.json["id"]


CLIENTS = {"asgi": asgi_get, "flask": flask_get}
PUNCTUATION_ONLY = ["-", "--", "...", ":", "_", "-._:", "-" * 128]


def in_request(root_records):
    return [r for r in root_records.records if r.name in ("app.ids", "MonitoringLogger")]


@pytest.mark.parametrize("incoming", PUNCTUATION_ONLY)
@pytest.mark.parametrize("kind", CLIENTS)
def test_ids_without_a_letter_or_digit_are_replaced_never_echoed_or_logged(
        kind, incoming, root_records):
    echoed, seen = CLIENTS[kind]("/x", {"X-Request-ID": incoming}, trust_incoming_id=True)
    assert echoed != incoming and sherlock_ai.is_valid_request_id(echoed)
    assert seen == echoed
    records = in_request(root_records)
    assert len(records) == 2 and all(r.request_id == echoed for r in records)


@pytest.mark.parametrize("incoming", ["-a", "...1", "a-", "0", "a:b.c_d-e"])
@pytest.mark.parametrize("kind", CLIENTS)
def test_ids_with_a_letter_or_digit_among_punctuation_are_trusted_when_asked(kind, incoming):
    assert CLIENTS[kind]("/x", {"X-Request-ID": incoming}, trust_incoming_id=True) == (
        incoming, incoming)


@pytest.mark.parametrize("kind", CLIENTS)
def test_incoming_ids_are_not_trusted_by_default(kind, root_records):
    echoed, seen = CLIENTS[kind]("/x", {"X-Request-ID": "victim-request-1"})
    assert echoed != "victim-request-1" and seen == echoed
    assert len(echoed) == 16 and sherlock_ai.is_valid_request_id(echoed)
    assert all(r.request_id == echoed for r in in_request(root_records))
    assert not any("victim-request-1" in r.getMessage() for r in root_records.records)


def test_set_request_id_refuses_punctuation_only_ids():
    for value in PUNCTUATION_ONLY:
        with pytest.raises(ValueError, match="at least one letter or digit"):
            sherlock_ai.set_request_id(value)


# --- threads and executors -------------------------------------------------------------------

worker_log = logging.getLogger("app.worker")


@monitor_memory(trace_malloc=False)
def work(label):
    worker_log.info(label)
    return sherlock_ai.get_request_id()


def start_work_in_threads():
    """What a handler does: one thread and an executor, each with and without carry_context."""
    seen = {}

    def in_thread(label):
        seen[label] = work(label)

    for target, label in ((in_thread, "plain thread"), (carry_context(in_thread), "thread")):
        thread = threading.Thread(target=target, args=(label,))
        thread.start()
        thread.join()
    # One worker: the blocks run one after the other, so none overlaps another.
    with ThreadPoolExecutor(max_workers=1) as pool:
        seen["plain pool"] = pool.submit(work, "plain pool").result()
        seen["submit"] = pool.submit(carry_context(work), "submit").result()
        seen["map"] = list(pool.map(carry_context(work), ["map 1", "map 2"]))
    return seen


def check_threads(seen, request_id, records, root_records, executor_lines=None):
    assert seen == {"plain thread": "", "thread": request_id, "plain pool": "",
                    "submit": request_id, "map": [request_id, request_id]}
    by_label = {r.getMessage(): r.request_id for r in root_records.named("app.worker")}
    assert by_label == {"plain thread": "-", "thread": request_id, "plain pool": "-",
                        "submit": request_id, "map 1": request_id, "map 2": request_id,
                        **(executor_lines or {})}
    blocks = [r.sherlock for r in records.records if r.sherlock.name.endswith(".work")]
    carried = [m for m in blocks if m.request_id == request_id]
    plain = [m for m in blocks if m.request_id == ""]
    extra = len(executor_lines or {}) // 2
    assert len(carried) == 4 + extra and len(plain) == 2 + extra
    # The request's open measurement is the carried blocks' parent; for the others it is a
    # block running concurrently.
    assert [m.concurrent for m in carried] == [0] * len(carried)
    assert [m.concurrent for m in plain] == [1] * len(plain)


def test_flask_handler_threads_and_executors_get_the_id_with_carry_context(
        records, root_records):
    app = Flask("threads")

    @app.get("/work")
    def handler():
        return {"seen": start_work_in_threads(), "id": sherlock_ai.get_request_id()}

    Sherlock(app)
    response = app.test_client().get("/work", buffered=True)
    body = response.json
    check_threads(body["seen"], body["id"], records, root_records)
    (request,) = [r for r in records.records if r.sherlock.name == "GET /work"]
    assert request.request_id == body["id"]


def test_fastapi_handler_threads_and_executors_get_the_id_with_carry_context(
        records, root_records):
    app = FastAPI()

    @app.get("/work")
    async def handler():
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1) as pool:
            # run_in_executor copies no context either.
            plain = await loop.run_in_executor(pool, work, "plain executor")
            carried = await loop.run_in_executor(pool, carry_context(work), "executor")
        seen = await loop.run_in_executor(None, carry_context(start_work_in_threads))
        return {"seen": seen, "executor": [plain, carried], "id": sherlock_ai.get_request_id()}

    body = get(instrument_app(app), "/work").json()
    request_id = body["id"]
    assert body["executor"] == ["", request_id]
    check_threads(body["seen"], request_id, records, root_records,
                  executor_lines={"plain executor": "-", "executor": request_id})


def test_carry_context_keeps_the_function_and_what_it_sets_stays_in_its_copy():
    def set_inside(value):
        """Doc."""
        sherlock_ai.set_request_id(value)
        return sherlock_ai.get_request_id()

    sherlock_ai.set_request_id("outer")
    bound = carry_context(set_inside)
    assert bound.__name__ == "set_inside" and bound.__doc__ == "Doc."
    assert bound("inner-1") == "inner-1" and bound("inner-2") == "inner-2"
    assert sherlock_ai.get_request_id() == "outer"


# --- exclude_paths prefixes ------------------------------------------------------------------

EXCLUDE = ["/health", "/static/"]
# path -> excluded?
PATHS = {"/health": True, "/health/": False, "/healthz": False, "/static/": True,
         "/static/app.css": True, "/static/img/a.png": True, "/static": False,
         "/staticfiles/x": False, "/items/1": False}


def test_asgi_exclude_paths_takes_exact_paths_and_prefixes(records):
    app = asgi_app(exclude_paths=EXCLUDE)
    for path in PATHS:
        response = get(app, path)
        assert response.status_code == 200
        assert sherlock_ai.is_valid_request_id(response.headers["X-Request-ID"])
    assert len(records.records) == sum(not excluded for excluded in PATHS.values())


def test_asgi_exclude_prefixes_ignore_the_root_path(records):
    app = asgi_app(exclude_paths=EXCLUDE)
    for path in PATHS:
        exchange = run(asgi_call(app, path, root_path="/api"))
        assert exchange.status == 200
    assert len(records.records) == sum(not excluded for excluded in PATHS.values())


def test_flask_exclude_paths_takes_exact_paths_and_prefixes(records):
    client = flask_app(exclude_paths=EXCLUDE).test_client()
    for path in PATHS:
        response = client.get(path, buffered=True)
        assert response.status_code == 200 and response.json["id"]
    names = sorted(r.getMessage().split(" | ")[1] for r in records.records)
    assert names == sorted(["GET /<path:path>"] * sum(not e for e in PATHS.values()))


def test_wsgi_exclude_paths_match_path_info(records):
    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    client = Client(SherlockWSGIMiddleware(wsgi_app, exclude_paths=EXCLUDE))
    for path in PATHS:
        assert client.get(path, buffered=True).status_code == 200
    assert len(records.messages("MEMORY")) == sum(not e for e in PATHS.values())


@pytest.mark.parametrize("paths, message", [
    (["/"], "'/' would be a prefix of every path"),
    (["/static/*"], "not patterns"),
    (["/files/?"], "not patterns"),
    (["static/"], "starting with '/'"),
    ("/static/", "iterable of paths"),
])
def test_bad_exclude_paths_are_refused_at_set_up(paths, message):
    error = TypeError if isinstance(paths, str) else ValueError
    for make in (lambda: asgi_app(exclude_paths=paths), lambda: flask_app(exclude_paths=paths)):
        with pytest.raises(error, match=message):
            make()
