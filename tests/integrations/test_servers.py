"""Real servers on 127.0.0.1: uvicorn under load with JSON logs on disk, a client that hangs up
mid-stream, and the request id in uvicorn's and gunicorn's own access lines."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

import sherlock_ai
from sherlock_ai.integrations.server_logs import GUNICORN_ACCESS_LOG_FORMAT
from web_support import SUPPORT, server

from .test_server_logs import GUNICORN_CONF, GUNICORN_PORT

pytestmark = pytest.mark.servers

UVICORN_SERVER = str(SUPPORT / "uvicorn_server.py")


def read_jsonl(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def fetch_all(url: str, count: int, concurrency: int):
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one(n: int):
            async with gate:
                response = await client.get(f"/items/{n}")
                return n, response.status_code, response.headers.get("X-Request-ID")

        return await asyncio.gather(*(one(n) for n in range(count)))


def test_uvicorn_under_load_leaves_one_memory_record_per_request(tmp_path):
    logs = tmp_path / "logs"
    count = 2000
    with server(UVICORN_SERVER, "--json-logs", str(logs), cwd=tmp_path) as uvicorn:
        results = asyncio.run(fetch_all(uvicorn.url, count, concurrency=32))
    assert all(status == 200 for _, status, _ in results)
    id_of = {n: request_id for n, _, request_id in results}
    assert all(sherlock_ai.is_valid_request_id(i) for i in id_of.values())
    assert len(set(id_of.values())) == count

    memory = [r for r in read_jsonl(logs / "monitoring.jsonl") if r.get("kind") == "memory"]
    assert len(memory) == count
    per_id = Counter(r["request_id"] for r in memory)
    assert set(per_id) == set(id_of.values()) and set(per_id.values()) == {1}
    assert {(r["name"], r["status"], r["status_code"], r["route"]) for r in memory} == {
        ("GET /items/{item_id}", "SUCCESS", 200, "/items/{item_id}")}

    messages = [r for r in read_jsonl(logs / "app.jsonl") if r["logger"] == "app.server"]
    assert len(messages) == count
    for record in messages:
        assert record["request_id"] == id_of[int(record["message"].split()[1])]


def test_a_client_hanging_up_mid_stream_ends_its_measurement(tmp_path):
    logs = tmp_path / "logs"
    with server(UVICORN_SERVER, "--json-logs", str(logs), cwd=tmp_path) as uvicorn:
        with socket.create_connection(("127.0.0.1", uvicorn.port), timeout=10) as client:
            client.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\nX-Request-ID: gone-1\r\n\r\n")
            received = b""
            while len(received) < 20_000:
                received += client.recv(65536)
        assert b"x-request-id: gone-1" in received.lower()
        deadline = time.monotonic() + 20
        records = []
        while time.monotonic() < deadline and not records:
            time.sleep(0.1)
            records = [r for r in read_jsonl(logs / "monitoring.jsonl")
                       if r.get("request_id") == "gone-1"]
        ok = httpx.get(f"{uvicorn.url}/items/1", headers={"X-Request-ID": "after-1"})
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "after-1"
    (record,) = records
    assert (record["name"], record["status"], record["level"], record["status_code"]) == (
        "GET /stream", "ERROR", "ERROR", 200)
    assert record["error"] == "client disconnected before the response was complete"


def test_uvicorn_access_lines_carry_the_request_id(tmp_path):
    sent = ["access-1", "access-2", None, "bad id <script>"]
    with server(UVICORN_SERVER, "--server-log-config", "--access-log", cwd=tmp_path) as uvicorn, \
            httpx.Client(base_url=uvicorn.url) as client:
        responses = [client.get(f"/items/{n}", headers={"X-Request-ID": rid} if rid else {})
                     for n, rid in enumerate(sent)]
    access = [line for line in (tmp_path / "server.out").read_text().splitlines()
              if " - uvicorn.access - " in line]
    assert len(access) == len(sent)
    for n, (line, response) in enumerate(zip(access, responses)):
        request_id = response.headers["X-Request-ID"]
        assert f" - {request_id} - uvicorn.access - INFO - 127.0.0.1:" in line
        assert line.endswith(f'"GET /items/{n} HTTP/1.1" 200 OK')
    assert [r.headers["X-Request-ID"] for r in responses[:2]] == sent[:2]
    assert "<script>" not in (tmp_path / "server.out").read_text()
    startup = (tmp_path / "server.err").read_text()
    assert " - - - uvicorn.error - INFO - Application startup complete." in startup


def test_gunicorn_access_lines_carry_the_request_id(tmp_path):
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    # SIGTERM, gunicorn's graceful stop: the worker ends the request it is in, access line
    # included. On SIGINT it raises SystemExit wherever it is; in the access log call, just
    # after the response went out, gunicorn then logs that request again as a 500.
    with server("-m", "gunicorn", "-c", "gunicorn_conf.py", "wsgi_app:app", cwd=tmp_path,
                port_pattern=GUNICORN_PORT, stop_signal=signal.SIGTERM) as gunicorn, \
            httpx.Client(base_url=gunicorn.url) as client:
        trusted = client.get("/items/1", headers={"X-Request-ID": "guni-1"})
        fresh = client.get("/items/2")
    assert trusted.json()["id"] == "guni-1"
    assert fresh.json()["id"] == fresh.headers["X-Request-ID"]
    access = [line for line in (tmp_path / "server.out").read_text().splitlines()
              if '"GET /items/' in line]
    assert len(access) == 2
    assert ' - 127.0.0.1 - guni-1 - "GET /items/1 HTTP/1.1" 200 ' in access[0]
    assert f' - 127.0.0.1 - {fresh.headers["X-Request-ID"]} - "GET /items/2 HTTP/1.1" 200 ' \
        in access[1]
    assert all(" - - - gunicorn.access - INFO - " in line for line in access)
    assert "%({sherlock_ai.request_id}e)s" in GUNICORN_ACCESS_LOG_FORMAT
