"""The Django integration behind real servers on 127.0.0.1: gunicorn (sync, two workers; gthread),
uvicorn serving the project's asgi.py, and Django's own runserver. The test project's LOGGING
sets ``disable_existing_loggers: True`` and its settings import sherlock_ai before Django
applies it."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Sequence

import httpx
import pytest

import sherlock_ai
from process_tree import stop_group
from web_support import GUNICORN_CONF, GUNICORN_PORT, ROOT, SUPPORT, server

pytestmark = pytest.mark.servers

pytest.importorskip("django")

PROJECT = SUPPORT / "django_project"
SHELVES = [f"/shelf/{x}/" for x in "abcdefghij"]
LEAKING_SHELF = "/shelf/g/"
# What each request of the leaking URL keeps: one bytes object of 4096 bytes.
RETAINED_PER_REQUEST = sys.getsizeof(b"c" * 4096)
LEAK_LINE = next(n for n, line in enumerate((PROJECT / "views.py").read_text().splitlines(), 1)
                 if line.rstrip().endswith("# LEAKS_HERE"))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """The environment of the servers started by the test: the test project, its logs in
    ``tmp_path / "logs"`` (returned)."""
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "django_project.settings")
    monkeypatch.setenv("DJANGO_PROJECT_LOGS", str(tmp_path / "logs"))
    monkeypatch.delenv("DJANGO_PROJECT_SHERLOCK_AI", raising=False)
    monkeypatch.delenv("DJANGO_PROJECT_ROOT_LOGGING", raising=False)
    return tmp_path / "logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving_on(port: int, *argv: str, cwd: Path,
               stop_signal: int = signal.SIGINT) -> Iterator[str]:
    """Run ``python {argv}`` serving on ``port`` (given in ``argv``) and yield its URL once it
    accepts connections; its whole process group is stopped at the end. For servers whose
    own start-up line the project's LOGGING silences (uvicorn's)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(SUPPORT)])}
    with open(cwd / "server.out", "wb") as out, open(cwd / "server.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=out,
                                stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{(cwd / 'server.err').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start:\n"
                                       f"{(cwd / 'server.err').read_text()}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc, stop_signal)


def read_jsonl(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def fetch_items(url: str, count: int, concurrency: int = 32):
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one(n: int):
            async with gate:
                response = await client.get(f"/items/{n}/")
                return n, response.status_code, response.headers.get("X-Request-ID")

        return await asyncio.gather(*(one(n) for n in range(count)))


def assert_one_memory_record_per_request(logs: Path, results) -> None:
    assert [status for _, status, _ in results] == [200] * len(results)
    id_of = {n: request_id for n, _, request_id in results}
    assert all(sherlock_ai.is_valid_request_id(i) for i in id_of.values())
    assert len(set(id_of.values())) == len(results)
    memory = [r for r in read_jsonl(logs / "monitoring.jsonl") if r.get("kind") == "memory"]
    per_id = Counter(r["request_id"] for r in memory)
    assert set(per_id) == set(id_of.values()) and set(per_id.values()) == {1}
    assert {(r["name"], r["status"], r["status_code"]) for r in memory} == {
        ("GET /items/<int:pk>/", "SUCCESS", 200)}
    # The view's own lines, in the file that collects every record, under their request's id.
    served = [r for r in read_jsonl(logs / "app.jsonl") if r["logger"] == "shop"]
    assert sorted((int(r["message"].split()[-1]), r["request_id"]) for r in served) == sorted(
        id_of.items())


GUNICORN_KINDS = {
    "sync, 2 workers": ["--workers", "2"],
    "gthread, 2 workers of 8 threads": ["--workers", "2", "--worker-class", "gthread",
                                        "--threads", "8"],
}


def serve_gunicorn(tmp_path: Path, *options: str):
    # The documented gunicorn.conf.py: it imports sherlock_ai in the master, before Django
    # applies the project's LOGGING in each worker.
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    return server("-m", "gunicorn", "-c", "gunicorn_conf.py", *options,
                  "django_project.wsgi:application", cwd=tmp_path,
                  port_pattern=GUNICORN_PORT, stop_signal=signal.SIGTERM)


@pytest.mark.parametrize("kind", GUNICORN_KINDS)
def test_gunicorn_leaves_one_memory_record_per_request(project, tmp_path, kind):
    with serve_gunicorn(tmp_path, *GUNICORN_KINDS[kind]) as gunicorn:
        results = asyncio.run(fetch_items(gunicorn.url, 400))
    assert_one_memory_record_per_request(project, results)


def test_uvicorn_serving_the_projects_asgi_leaves_one_memory_record_per_request(project,
                                                                               tmp_path):
    port = free_port()
    with serving_on(port, "-m", "uvicorn", "django_project.asgi:application", "--port",
                    str(port), cwd=tmp_path) as url:
        results = asyncio.run(fetch_items(url, 400))
    assert_one_memory_record_per_request(project, results)


@pytest.mark.slow
@pytest.mark.parametrize("kind", GUNICORN_KINDS)
def test_gunicorn_3000_requests_one_memory_record_each(project, tmp_path, kind):
    with serve_gunicorn(tmp_path, *GUNICORN_KINDS[kind]) as gunicorn:
        results = asyncio.run(fetch_items(gunicorn.url, 3000))
    assert_one_memory_record_per_request(project, results)


@pytest.mark.slow
def test_uvicorn_3000_requests_one_memory_record_each(project, tmp_path):
    port = free_port()
    with serving_on(port, "-m", "uvicorn", "django_project.asgi:application", "--port",
                    str(port), cwd=tmp_path) as url:
        results = asyncio.run(fetch_items(url, 3000))
    assert_one_memory_record_per_request(project, results)


def test_uvicorn_a_client_that_goes_away_ends_its_request_as_disconnected(
        project, tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_PROJECT_SHERLOCK_AI", json.dumps({"trust_incoming_id": True}))
    port = free_port()
    with serving_on(port, "-m", "uvicorn", "django_project.asgi:application", "--port",
                    str(port), cwd=tmp_path) as url:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as gone:
            gone.sendall(b"GET /async-slow/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"X-Request-ID: gone-1\r\n\r\n")
            time.sleep(0.3)  # the view is awaiting: Django cancels it when the client leaves
        deadline = time.monotonic() + 20
        records: List[dict] = []
        while not records and time.monotonic() < deadline:
            time.sleep(0.1)
            records = [r for r in read_jsonl(project / "monitoring.jsonl")
                       if r.get("request_id") == "gone-1"]
        after = httpx.get(f"{url}/items/1/")
    assert after.status_code == 200
    (record,) = records
    assert (record["name"], record["status"]) == ("GET /async-slow/", "ERROR")
    assert record["error"] == "client disconnected before the response was complete"
    assert record["duration"] < 2


@pytest.mark.parametrize("root", [False, True], ids=["LOGGING without root",
                                                   "LOGGING configuring the root logger"])
def test_runserver_writes_lines_with_ids(project, tmp_path, monkeypatch, root):
    # runserver applies LOGGING twice (its own django.setup(), then get_wsgi_application's):
    # the second time, a LOGGING that configures the root logger replaces the set-up's app
    # file there, and disables MonitoringLogger again either way.
    if root:
        monkeypatch.setenv("DJANGO_PROJECT_ROOT_LOGGING", "1")
    port = free_port()
    with serving_on(port, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}",
                    cwd=tmp_path) as url, httpx.Client(base_url=url) as client:
        item = client.get("/items/3/")
        failed = client.get("/fail/")
        missing = client.get("/no/such/page/")
        file, streamed = client.get("/file/"), client.get("/stream/")
    assert [item.status_code, failed.status_code, missing.status_code] == [200, 500, 404]
    assert len(file.content) == 100_000 and len(streamed.content) == 5000
    ids = [r.headers["X-Request-ID"] for r in (item, failed, missing)]
    memory = {r["request_id"]: r for r in read_jsonl(project / "monitoring.jsonl")
              if r.get("kind") == "memory"}
    # The file through the server's file wrapper, the stream to its last chunk: both closed.
    file_line = memory.pop(file.headers["X-Request-ID"])
    stream_line = memory.pop(streamed.headers["X-Request-ID"])
    assert (file_line["name"], file_line["status"]) == ("GET /file/", "SUCCESS")
    assert (stream_line["name"], stream_line["status"]) == ("GET /stream/", "SUCCESS")
    assert stream_line["duration"] >= 5 * 0.02
    assert set(memory) == set(ids)
    assert [(memory[i]["name"], memory[i]["status"]) for i in ids] == [
        ("GET /items/<int:pk>/", "SUCCESS"), ("GET /fail/", "ERROR"),
        ("GET <unmatched>", "SUCCESS")]
    assert memory[ids[1]]["error"] == "HTTP 500 (ZeroDivisionError: division by zero)"
    # The view's own line, in the file that collects every record, under its request's id.
    served = [(r["message"], r["request_id"]) for r in read_jsonl(project / "app.jsonl")
              if r["logger"] == "shop" and r["message"].startswith("serving")]
    assert served == [("serving item 3", ids[0])]
    # Django's own lines (the console of the project's LOGGING, on stderr), with the filter
    # referenced from LOGGING: django.request's, logged after the middleware returned for the
    # 404, and django.server's access lines, logged after the response was sent.
    err = (tmp_path / "server.err").read_text()
    assert f" - {ids[1]} - django.request - ERROR - Internal Server Error: /fail/" in err
    assert f" - {ids[2]} - django.request - WARNING - Not Found: /no/such/page/" in err
    for request_id, request_line in zip(ids, ("GET /items/3/", "GET /fail/",
                                              "GET /no/such/page/")):
        assert f' - {request_id} - django.server - ' in err
        assert any(f" - {request_id} - django.server - " in line and request_line in line
                   for line in err.splitlines())


def test_a_wrong_setting_stops_django_at_start_up(project, tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_PROJECT_SHERLOCK_AI", json.dumps({"leak_detect": True}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(SUPPORT)])}
    result = subprocess.run([sys.executable, "-m", "django", "check"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: settings.SHERLOCK_AI has an unknown " \
           "key 'leak_detect' (did you mean 'leak_detection'?)" in result.stderr


# -- the leak watch: ten URL patterns of one class-based view ---------------------------------


async def random_traffic(url: str, count: int, seed: int, paths: Sequence[str],
                         concurrency: int = 8) -> List[int]:
    rng = random.Random(seed)
    queue: asyncio.Queue = asyncio.Queue()
    for _ in range(count):
        queue.put_nowait(rng.choice(paths))
    statuses: List[int] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while not queue.empty():
                statuses.append((await client.get(queue.get_nowait())).status_code)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


@contextmanager
def gthread_url(tmp_path: Path) -> Iterator[str]:
    with serve_gunicorn(tmp_path, "--workers", "1", "--worker-class", "gthread",
                        "--threads", "8") as gunicorn:
        yield gunicorn.url


@contextmanager
def uvicorn_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with serving_on(port, "-m", "uvicorn", "django_project.asgi:application", "--port",
                    str(port), "--no-access-log", cwd=tmp_path) as url:
        yield url


def suspects_after(project: Path, tmp_path: Path, count: int, seed: int,
                   paths: Sequence[str] = SHELVES, serve=gthread_url) -> List[dict]:
    os.environ["DJANGO_PROJECT_SHERLOCK_AI"] = json.dumps({"leak_detection": True})
    with serve(tmp_path) as url:
        statuses = asyncio.run(random_traffic(url, count, seed, paths))
    assert statuses.count(200) == count
    return [r for r in read_jsonl(project / "monitoring.jsonl")
            if r.get("kind") == "leak_suspect"]


def assert_the_leaking_url_is_named(suspects: List[dict]) -> None:
    assert suspects, "the leaking URL was not flagged"
    assert {s["name"] for s in suspects} == {f"GET {LEAKING_SHELF}"}
    first = suspects[0]
    assert first["message"].startswith(f"LEAK SUSPECT | GET {LEAKING_SHELF} | +")
    assert first["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
    top = first["sites"][0]
    assert top["file"].endswith("views.py") and top["line"] == LEAK_LINE


def test_gthread_the_leaking_url_of_a_class_based_view_is_named_within_2000_requests(
        project, tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_PROJECT_SHERLOCK_AI", "{}")  # restored after the test
    assert_the_leaking_url_is_named(suspects_after(project, tmp_path, 2_000, seed=11))


def test_uvicorn_the_leaking_url_of_a_class_based_view_is_named_within_2000_requests(
        project, tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_PROJECT_SHERLOCK_AI", "{}")
    assert_the_leaking_url_is_named(suspects_after(project, tmp_path, 2_000, seed=14,
                                                   serve=uvicorn_url))


@pytest.mark.slow
@pytest.mark.parametrize("serve", [gthread_url, uvicorn_url], ids=["gthread", "uvicorn"])
def test_no_other_url_of_the_class_based_view_is_named_in_10000_requests(
        project, tmp_path, monkeypatch, serve):
    monkeypatch.setenv("DJANGO_PROJECT_SHERLOCK_AI", "{}")
    suspects = suspects_after(project, tmp_path, 10_000, seed=12, serve=serve)
    assert {s["name"] for s in suspects} == {f"GET {LEAKING_SHELF}"}
    assert all(s["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
               for s in suspects)


def test_gthread_a_function_view_that_keeps_memory_is_named(project, tmp_path, monkeypatch):
    monkeypatch.setenv("DJANGO_PROJECT_SHERLOCK_AI", "{}")
    paths = [p for p in SHELVES if p != LEAKING_SHELF] + ["/cart/add/"]
    suspects = suspects_after(project, tmp_path, 2_000, seed=15, paths=paths)
    assert suspects, "the leaking function view was not flagged"
    assert {s["name"] for s in suspects} == {"GET /cart/add/"}
    assert suspects[0]["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
    top = suspects[0]["sites"][0]
    assert top["file"].endswith("views.py") and top["line"] == next(
        n for n, line in enumerate((PROJECT / "views.py").read_text().splitlines(), 1)
        if line.rstrip().endswith("# FUNCTION_LEAKS"))


def test_gthread_a_rest_framework_viewset_action_that_keeps_memory_is_named(
        project, tmp_path, monkeypatch):
    pytest.importorskip("rest_framework", reason="Django REST framework is not installed")
    monkeypatch.setenv("DJANGO_PROJECT_SHERLOCK_AI", "{}")
    # The viewset's list and retrieve (which keeps 4 KB) among eight clean URLs.
    paths = [p for p in SHELVES if p != LEAKING_SHELF][:8] + ["/drf/products/",
                                                             "/drf/products/7/"]
    suspects = suspects_after(project, tmp_path, 2_000, seed=13, paths=paths)
    assert suspects, "the leaking viewset action was not flagged"
    assert {s["name"] for s in suspects} == {"GET /drf/products/(?P<pk>[^/.]+)/$"}
    assert suspects[0]["per_request"] == pytest.approx(RETAINED_PER_REQUEST, rel=0.25)
    top = suspects[0]["sites"][0]
    assert top["file"].endswith("viewsets.py") and top["line"] == next(
        n for n, line in enumerate((PROJECT / "viewsets.py").read_text().splitlines(), 1)
        if line.rstrip().endswith("# VIEWSET_LEAKS"))


# -- the example -------------------------------------------------------------------------------


def test_the_django_shop_example_serves_and_logs_with_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_LOGS_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    port = free_port()
    manage = str(ROOT / "examples" / "django_shop" / "manage.py")
    with serving_on(port, manage, "runserver", "--noreload", f"127.0.0.1:{port}",
                    cwd=tmp_path) as url, httpx.Client(base_url=url) as client:
        item = client.get("/items/3/")
        failed = client.get("/checkout/")
        exported = client.get("/export/")
        carts = [client.post("/cart/items/") for _ in range(3)]
        health = client.get("/health/")
    assert item.json() == {"id": 3, "name": "item 3"}
    assert failed.status_code == 500 and exported.text.startswith("id,name\n0,item 0\n")
    assert carts[-1].json() == {"carts": 3} and health.json() == {"ok": True}
    memory = (tmp_path / "logs" / "monitoring.log").read_text()
    assert f" - {item.headers['X-Request-ID']} - MonitoringLogger - INFO - MEMORY | " \
           "GET /items/<int:pk>/ | SUCCESS" in memory
    assert f" - {failed.headers['X-Request-ID']} - MonitoringLogger - ERROR - MEMORY | " \
           "GET /checkout/ | ERROR" in memory
    assert "Error: HTTP 500 (RuntimeError: payment provider unavailable)" in memory
    assert f" - {exported.headers['X-Request-ID']} - MonitoringLogger - INFO - MEMORY | " \
           "GET /export/ | SUCCESS" in memory
    assert memory.count("MEMORY | POST /cart/items/ | SUCCESS") == 3
    assert health.headers["X-Request-ID"] not in memory  # excluded: an id, no line
    app = (tmp_path / "logs" / "app.log").read_text()
    assert f" - {item.headers['X-Request-ID']} - shop - INFO - item 3 viewed" in app
