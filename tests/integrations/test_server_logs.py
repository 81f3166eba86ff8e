"""Servers as people run them, with ``sherlock_ai()`` called when the app is imported: what
the console and the log files show (docs/integrations.md, "Running under servers")."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import httpx
import pytest

from web_support import GUNICORN_CONF, GUNICORN_PORT, ROOT, SUPPORT, server

pytestmark = pytest.mark.servers


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def matching(path: Path, needle: str) -> List[str]:
    return [line for line in text(path).splitlines() if needle in line]


def wait_for(path: Path, needle: str) -> None:
    """Until ``needle`` was logged: a server stopped right after a response may interrupt the
    worker still finishing it."""
    deadline = time.monotonic() + 10
    while needle not in text(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert needle in text(path), text(path)


def worker_pids(path: Path) -> List[int]:
    return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", text(path))]


def assert_gone(pids: List[int]) -> None:
    """The processes ended (a zombie left for PID 1 to reap counts as alive); any left are
    killed before the test fails, so none outlives it."""
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.05)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"processes still running: {alive}"


@contextmanager
def workers_reaped(err: Path) -> Iterator[None]:
    """Around a gunicorn run: its workers (named in its log) are gone at the end."""
    try:
        yield
    finally:
        assert_gone(worker_pids(err) if err.exists() else [])


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_uvicorn_cli_default_logging_puts_access_lines_with_ids_in_files_and_console(tmp_path):
    with server("-m", "uvicorn", "served_fastapi_app:app", "--host", "127.0.0.1",
                "--port", "0", cwd=tmp_path,
                port_pattern=r"Uvicorn running on http://127\.0\.0\.1:(\d+)") as uvicorn, \
            httpx.Client(base_url=uvicorn.url) as client:
        given = client.get("/items/1", headers={"X-Request-ID": "cli-1"})
        fresh = client.get("/items/2")
    assert given.status_code == fresh.status_code == 200
    fresh_id = fresh.headers["X-Request-ID"]
    app_log = tmp_path / "logs" / "app.log"
    files = matching(app_log, " - uvicorn.access - ")
    assert len(files) == 2, text(app_log)
    assert re.fullmatch(r"\S+ \S+ - cli-1 - uvicorn\.access - INFO - 127\.0\.0\.1:\d+ - "
                        r'"GET /items/1 HTTP/1\.1" 200', files[0]), files[0]
    assert f" - {fresh_id} - uvicorn.access - INFO - " in files[1]
    # uvicorn's console look (stdout), with the id after the client address.
    console = matching(tmp_path / "server.out", "GET /items/")
    assert len(console) == 2, text(tmp_path / "server.out")
    assert re.fullmatch(r'INFO: +127\.0\.0\.1:\d+ - cli-1 - "GET /items/1 HTTP/1\.1" 200 OK',
                        console[0]), console[0]
    assert f' - {fresh_id} - "GET /items/2 HTTP/1.1" 200 OK' in console[1]
    # The app's lines and uvicorn's own reach the files; the console shows each once.
    assert len(matching(tmp_path / "server.err", " - cli-1 - app.served - INFO - item 1")) == 1
    assert len(matching(app_log, " - cli-1 - app.served - INFO - item 1")) == 1
    assert matching(app_log, " - - - uvicorn.error - INFO - Application startup complete.")
    assert len(matching(tmp_path / "server.err", "Application startup complete.")) == 1


def test_uvicorn_cli_with_the_printed_log_config(tmp_path):
    printed = subprocess.run([sys.executable, "-m", "sherlock_ai", "uvicorn-log-config"],
                             cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    (tmp_path / "log.json").write_text(printed.stdout)
    with server("-m", "uvicorn", "served_fastapi_app:app", "--host", "127.0.0.1",
                "--port", "0", "--log-config", "log.json", cwd=tmp_path,
                port_pattern=r"Uvicorn running on http://127\.0\.0\.1:(\d+)") as uvicorn, \
            httpx.Client(base_url=uvicorn.url) as client:
        assert client.get("/items/3", headers={"X-Request-ID": "cfg-3"}).status_code == 200
    (console,) = matching(tmp_path / "server.out", "GET /items/3")
    assert re.fullmatch(r"\S+ \S+ - cfg-3 - uvicorn\.access - INFO - 127\.0\.0\.1:\d+ - "
                        r'"GET /items/3 HTTP/1\.1" 200 OK', console), console
    (in_file,) = matching(tmp_path / "logs" / "app.log", "GET /items/3")
    assert " - cfg-3 - uvicorn.access - INFO - " in in_file


def test_gunicorn_with_the_documented_config_prints_each_line_once(tmp_path):
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    with workers_reaped(tmp_path / "server.err"), \
            server("-m", "gunicorn", "-c", "gunicorn_conf.py", "served_flask_app:app",
                   cwd=tmp_path, port_pattern=GUNICORN_PORT,
                   stop_signal=signal.SIGTERM) as gunicorn, \
            httpx.Client(base_url=gunicorn.url) as client:
        assert client.get("/items/1", headers={"X-Request-ID": "guni-1"}).status_code == 200
        wait_for(tmp_path / "server.out", '"GET /items/1 HTTP/1.1"')
    out, err = tmp_path / "server.out", tmp_path / "server.err"
    both = matching(out, "guni-1") + matching(err, "guni-1")
    assert len([line for line in both if " - guni-1 - app.served - INFO - item 1" in line]) == 1
    assert len([line for line in both if "MEMORY | GET /items/<int:item_id>" in line]) == 1
    (access,) = [line for line in both if " - gunicorn.access - " in line]
    assert ' - 127.0.0.1 - guni-1 - "GET /items/1 HTTP/1.1" 200 ' in access
    # The files get the app's lines and gunicorn's own.
    app_log = tmp_path / "logs" / "app.log"
    assert len(matching(app_log, " - guni-1 - app.served - INFO - item 1")) == 1
    assert len(matching(app_log, ' - 127.0.0.1 - guni-1 - "GET /items/1 HTTP/1.1" 200 ')) == 1
    assert matching(app_log, " - gunicorn.error - INFO - Worker exiting (pid: ")


def test_gunicorn_with_uvicorn_workers_prints_each_line_once(tmp_path):
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    with workers_reaped(tmp_path / "server.err"), \
            server("-m", "gunicorn", "-c", "gunicorn_conf.py", "-k",
                   "uvicorn.workers.UvicornWorker", "served_fastapi_app:app", cwd=tmp_path,
                   port_pattern=GUNICORN_PORT, stop_signal=signal.SIGTERM) as gunicorn, \
            httpx.Client(base_url=gunicorn.url) as client:
        assert client.get("/items/4", headers={"X-Request-ID": "uvw-4"}).status_code == 200
        wait_for(tmp_path / "server.out", '"GET /items/4 HTTP/1.1"')
    out, err = tmp_path / "server.out", tmp_path / "server.err"
    both = matching(out, "uvw-4") + matching(err, "uvw-4")
    assert len([line for line in both if " - uvw-4 - app.served - INFO - item 4" in line]) == 1
    (access,) = [line for line in both if " - uvicorn.access - " in line]
    assert re.search(r' - uvw-4 - uvicorn\.access - INFO - 127\.0\.0\.1:\d+ - '
                     r'"GET /items/4 HTTP/1\.1" 200$', access), access
    app_log = tmp_path / "logs" / "app.log"
    assert len(matching(app_log, " - uvw-4 - uvicorn.access - INFO - ")) == 1
    assert len(matching(app_log, " - uvw-4 - app.served - INFO - item 4")) == 1


def test_flask_run_access_lines_carry_the_id_and_files_get_plain_text(tmp_path):
    with server("-m", "flask", "--app", "served_flask_app", "run", "--host", "127.0.0.1",
                "--port", "0", cwd=tmp_path,
                port_pattern=r"Running on http://127\.0\.0\.1:(\d+)") as flask, \
            httpx.Client(base_url=flask.url) as client:
        assert client.get("/items/5", headers={"X-Request-ID": "dev-5"}).status_code == 200
        missing = client.get("/missing", headers={"X-Request-ID": "dev-404"})
        assert missing.status_code == 404
    app_log = tmp_path / "logs" / "app.log"
    assert "\x1b" not in text(app_log)
    (ok,) = matching(app_log, '"GET /items/5 HTTP/1.1"')
    assert re.search(r' - dev-5 - werkzeug - INFO - 127\.0\.0\.1 - - \[[^]]+\] '
                     r'"GET /items/5 HTTP/1\.1" 200 -$', ok), ok
    (not_found,) = matching(app_log, '"GET /missing HTTP/1.1"')
    assert ' - dev-404 - werkzeug - INFO - ' in not_found and not_found.endswith(" 404 -")
    # The console is sherlock_ai's (werkzeug adds none when the root logger has one).
    console = matching(tmp_path / "server.err", '"GET /items/5 HTTP/1.1"')
    assert len(console) == 1 and " - dev-5 - werkzeug - INFO - " in console[0]
    assert "\x1b" not in text(tmp_path / "server.err")


def test_uvicorn_run_with_log_config_none_sends_access_lines_through_sherlock_ai(tmp_path):
    logs = tmp_path / "logs"
    with server(str(SUPPORT / "uvicorn_server.py"), "--json-logs", str(logs), "--access-log",
                cwd=tmp_path) as uvicorn, httpx.Client(base_url=uvicorn.url) as client:
        assert client.get("/items/6", headers={"X-Request-ID": "run-6"}).status_code == 200
    records = [json.loads(line) for line in text(logs / "app.jsonl").splitlines()]
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert [(r["request_id"], r["message"].split(" - ", 1)[1]) for r in access] == [
        ("run-6", '"GET /items/6 HTTP/1.1" 200')]
    assert any(r["logger"] == "uvicorn.error" and r["message"] == "Application startup complete."
               for r in records)
