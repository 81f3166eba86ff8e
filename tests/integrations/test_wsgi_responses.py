"""What the WSGI middleware hands the server, and how long a request's measurement stays open:
bodies produced in full end when the application returns them, streamed ones at ``close()``,
unclosed ones when garbage collected; servers keep ``Content-Length`` and their sendfile path."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import threading
import wsgiref.simple_server
from contextlib import contextmanager
from typing import Iterator, List

import httpx
import pytest

import sherlock_ai
from sherlock_ai import MemoryTracker
from sherlock_ai.integrations.collected import wait_for_collected
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware
from web_support import ROOT

NOT_CLOSED = "the response was never closed (measured until it was garbage collected)"


def environ(path: str = "/") -> dict:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "localhost",
            "SERVER_PORT": "80", "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"}


def start_response(status, headers, exc_info=None):
    return lambda data: None


def no_other_block_is_open() -> bool:
    """A fresh block overlaps no open one: the engine holds no forgotten request."""
    with MemoryTracker("probe", min_duration=3600, trace_malloc=False) as probe:
        pass
    return probe.measurement.concurrent == 0


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("cannot describe myself")


class SendfileHandler(wsgiref.simple_server.ServerHandler):
    """wsgiref's handler, noting each body it could have sent with ``sendfile``: wsgiref calls
    ``sendfile()`` only for bodies that are its own ``wsgi.file_wrapper`` objects."""

    sendfile_bodies: List[object] = []

    def sendfile(self):
        type(self).sendfile_bodies.append(self.result)
        return False  # "not sent": wsgiref then iterates the body itself


@contextmanager
def wsgiref_server(app, monkeypatch) -> Iterator[str]:
    """wsgiref serving ``app`` on 127.0.0.1 in a thread; stopped at the end."""
    SendfileHandler.sendfile_bodies = []
    monkeypatch.setattr(wsgiref.simple_server, "ServerHandler", SendfileHandler)
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("make_body", [list, tuple])
def test_a_body_produced_in_full_is_logged_when_the_app_returns_it(make_body, records):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return make_body([b"in memory"])

    body = SherlockWSGIMiddleware(app)(environ("/full"), start_response)
    (line,) = records.messages("MEMORY | ")
    assert line.startswith("MEMORY | GET <unmatched> | SUCCESS | ")
    assert type(body) is make_body and list(body) == [b"in memory"]
    assert no_other_block_is_open()


@pytest.mark.servers
def test_wsgiref_keeps_the_content_length_of_a_list_body(monkeypatch, records):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"twelve bytes"]

    with wsgiref_server(SherlockWSGIMiddleware(app, trust_incoming_id=True), monkeypatch) as url:
        response = httpx.get(url + "/sized", headers={"X-Request-ID": "sized-1"})
    assert response.headers["Content-Length"] == "12"
    assert response.headers["X-Request-ID"] == "sized-1" and response.text == "twelve bytes"
    assert records.messages("MEMORY | GET <unmatched> | SUCCESS | ") != []


@pytest.mark.servers
def test_a_file_wrapper_body_reaches_the_server_and_ends_at_close(tmp_path, monkeypatch,
                                                                 records):
    (tmp_path / "data.bin").write_bytes(b"x" * 70_000)
    returned = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        file = open(tmp_path / "data.bin", "rb")  # noqa: SIM115 - the server's close() closes it
        body = environ["wsgi.file_wrapper"](file)
        returned.append(body)
        return body

    with wsgiref_server(SherlockWSGIMiddleware(app, trust_incoming_id=True), monkeypatch) as url:
        response = httpx.get(url + "/file", headers={"X-Request-ID": "file-1"})
    assert response.content == b"x" * 70_000
    assert SendfileHandler.sendfile_bodies == returned
    assert returned[0].filelike.closed
    (record,) = [r for r in records.records if r.getMessage().startswith("MEMORY | ")]
    assert record.getMessage().startswith("MEMORY | GET <unmatched> | SUCCESS | ")
    assert record.request_id == "file-1"
    assert no_other_block_is_open()


def stream_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks():
        for number in range(3):
            yield f"{number} {sherlock_ai.get_request_id()},".encode()
    return chunks()


def test_a_streamed_body_is_measured_until_close_with_its_id_in_each_chunk(records):
    env = {**environ("/stream"), "HTTP_X_REQUEST_ID": "stream-1"}
    body = SherlockWSGIMiddleware(stream_app, trust_incoming_id=True)(env, start_response)
    assert records.messages() == []
    assert b"".join(body) == b"0 stream-1,1 stream-1,2 stream-1,"
    assert sherlock_ai.get_request_id() == ""
    assert records.messages() == []
    body.close()
    (line,) = records.messages()
    assert line.startswith("MEMORY | GET <unmatched> | SUCCESS | ")
    assert no_other_block_is_open()


@pytest.mark.parametrize("read", [0, 1, 3])
def test_a_streamed_body_never_closed_ends_when_collected(read, records):
    body = SherlockWSGIMiddleware(stream_app)(environ("/lost"), start_response)
    chunks = [next(body) for _ in range(read)]
    assert len(chunks) == read
    assert records.messages() == [] and not no_other_block_is_open()
    del body
    gc.collect()
    (line,) = records.wait_for(1)
    assert line.startswith("MEMORY | GET <unmatched> | ERROR | ")
    assert line.endswith("| Error: " + NOT_CLOSED)
    assert no_other_block_is_open()


def test_unclosed_streams_do_not_accumulate_in_the_engine(records):
    middleware = SherlockWSGIMiddleware(stream_app)
    for _ in range(50):
        body = middleware(environ("/many"), start_response)
        next(body)
    del body
    gc.collect()
    # Their ends run on the finisher thread; waiting for it leaves none to come (what a
    # harness counting lines needs: make peers does this).
    assert wait_for_collected()
    assert len([m for m in records.messages() if m.startswith("MEMORY | ")]) == 50
    assert no_other_block_is_open()


class _StallFinisher(logging.Filter):
    """Holds the finisher thread in its first line until released (a slow handler, or a
    process too busy to give it the GIL)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def filter(self, record: logging.LogRecord) -> bool:
        if threading.current_thread().name == "sherlock_ai-unclosed":
            self.release.wait(30)
        return True


def test_bodies_never_closed_wait_in_a_bounded_queue_and_none_is_lost(records, monkeypatch):
    from sherlock_ai.integrations import collected

    monkeypatch.setattr(collected, "MAX_WAITING", 40)  # HELP_STEP (2) more at most
    stall = _StallFinisher()
    handler = logging.NullHandler()
    handler.addFilter(stall)
    monitoring = logging.getLogger("MonitoringLogger")
    monitoring.addHandler(handler)
    middleware = SherlockWSGIMiddleware(stream_app)
    waiting = []
    try:
        for _ in range(300):
            body = middleware(environ("/unclosed"), start_response)
            next(body)
            del body  # never closed: collected here, its end queued for the finisher
            waiting.append(collected._work.qsize())
    finally:
        stall.release.set()
        monitoring.removeHandler(handler)
    # The requests finished what waited beyond the bound (the finisher held one of them).
    assert max(waiting) <= 42, max(waiting)
    assert wait_for_collected()
    assert len([m for m in records.messages() if m.startswith("MEMORY | ")]) == 300
    assert no_other_block_is_open()


def test_an_exception_that_cannot_describe_itself_keeps_its_record(records):
    def app(environ, start_response):
        raise Unprintable()

    with pytest.raises(Unprintable):
        SherlockWSGIMiddleware(app)(environ("/raise"), start_response)
    (record,) = [r for r in records.records if r.getMessage().startswith("MEMORY | ")]
    assert record.getMessage().startswith("MEMORY | GET <unmatched> | ERROR | ")
    assert record.getMessage().endswith("| Error: Unprintable")
    assert record.sherlock.attributes["error_type"] == "Unprintable"


def test_an_undescribable_exception_raised_mid_stream_keeps_its_record(records):
    def app(environ, start_response):
        start_response("200 OK", [])

        def chunks():
            yield b"first"
            raise Unprintable()
        return chunks()

    body = SherlockWSGIMiddleware(app)(environ("/midway"), start_response)
    assert next(body) == b"first"
    with pytest.raises(Unprintable):
        next(body)
    body.close()
    (line,) = records.messages("MEMORY | ")
    assert line.startswith("MEMORY | GET <unmatched> | ERROR | ")
    assert line.endswith("| Error: Unprintable")


COLLECTED_UNDER_THE_LOCK = """
import gc, logging, sys
from sherlock_ai.engine import tracing
from sherlock_ai.integrations.collected import wait_for_collected
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware

lines = []
handler = logging.Handler()
handler.emit = lambda record: lines.append(record.getMessage())
logging.getLogger("MonitoringLogger").addHandler(handler)
logging.getLogger("MonitoringLogger").setLevel(logging.INFO)

def app(environ, start_response):
    start_response("200 OK", [])
    return iter([b"a", b"b"])

environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/cycle", "wsgi.input": sys.stdin}
body = SherlockWSGIMiddleware(app)(environ, lambda status, headers, exc_info=None: None)
next(body)
cycle = [body]
cycle.append(cycle)  # only the cycle collector frees it
del body, cycle
# The collector runs wherever an allocation triggers it: here, inside a critical section of
# the engine (the tracing lock is held while a span opens or closes).
with tracing.LOCK:
    gc.collect()
gc.collect()
import time
deadline = time.monotonic() + 20
while not lines and time.monotonic() < deadline:
    time.sleep(0.01)
print("collected without deadlock", flush=True)
print(*lines, sep=chr(10), flush=True)
"""


@pytest.mark.servers
def test_a_body_collected_while_the_engine_holds_its_lock_does_not_deadlock(tmp_path):
    # Ending the measurement inside the weakref callback re-entered the engine's lock (not
    # re-entrant) and hung the thread for ever; a subprocess keeps a hang out of this run.
    done = subprocess.run([sys.executable, "-c", COLLECTED_UNDER_THE_LOCK], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    said, line = done.stdout.splitlines()
    assert said == "collected without deadlock"
    assert line.startswith("MEMORY | GET <unmatched> | ERROR | ")
    assert line.endswith("| Error: " + NOT_CLOSED)

