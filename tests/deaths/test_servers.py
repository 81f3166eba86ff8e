"""Worker deaths under real servers on 127.0.0.1 with real signals: the worker serving a
request is killed with SIGKILL and exactly one ``WORKER DIED`` line names its pid, the request
(path and id) and, where the supervisor tells it (gunicorn's arbiter with our hooks), the
signal; graceful recycles and restarts tell none; a worker killed by the kernel's OOM killer in
a memory cgroup is named its victim with the cgroup's evidence."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import List

import httpx
import pytest

from sherlock_ai.deaths.record import read_record
from sherlock_ai.deaths.watch import SUPERVISOR_GRACE_S
from web_support import ROOT, server

pytestmark = pytest.mark.servers

GUNICORN_PORT = r"Listening at: http://127\.0\.0\.1:(\d+)"
UVICORN_PORT = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"
# The documented gunicorn.conf.py: the first Python block of docs/worker-deaths.md.
GUNICORN_CONF = re.search(r"```python\n(.*?)```",
                          (ROOT / "docs" / "worker-deaths.md").read_text(), re.S).group(1)
UVICORN_WORKERS = ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "0", "--workers", "2",
                   "deaths_server:asgi_app"]


def gunicorn(worker_class: str, app: str, *extra: str) -> List[str]:
    return ["-m", "gunicorn", "-c", "gunicorn_conf.py", "-k", worker_class, "-w", "2",
            "-b", "127.0.0.1:0", "--graceful-timeout", "10", *extra, f"deaths_server:{app}"]


def deaths(folder: Path) -> List[str]:
    log = folder / "logs" / "monitoring.log"
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if "WORKER DIED" in line]


def wait_for_death(folder: Path, pid: int, timeout: float = 20.0) -> List[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in deaths(folder) if f"WORKER DIED | pid {pid} |" in line]
        if found:
            return found
        time.sleep(0.1)
    return []


def wait_for_reading_after(folder: Path, pid: int, moment: float) -> None:
    """Wait until the record of ``pid`` holds an RSS reading its watcher took after
    ``moment``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in (folder / "logs" / ".workers").glob(f"{pid}-*.rec"):
            view = read_record(path)
            if view is not None and view.readings and view.readings[-1][0] > moment:
                return
        time.sleep(0.1)
    raise AssertionError(f"no reading of pid {pid} after the request's allocation")


def kill_serving_worker(url: str, folder: Path, request_id: str,
                        path: str = "/hold?mb=40") -> int:
    """Send ``path`` with ``request_id``, SIGKILL the worker that serves it once it holds its
    memory and its watcher took a reading after that; returns the worker's pid."""
    failures: List[BaseException] = []

    def call() -> None:
        try:
            httpx.get(url + path, headers={"X-Request-ID": request_id}, timeout=120)
        except httpx.HTTPError as exc:
            failures.append(exc)

    client = threading.Thread(target=call)
    client.start()
    pid_file = folder / "pids" / request_id
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists(), "the request never reached the app"
    pid = int(pid_file.read_text())
    wait_for_reading_after(folder, pid, pid_file.stat().st_mtime)
    os.kill(pid, signal.SIGKILL)
    client.join(60)
    assert failures, "the killed worker's request cannot have been answered"
    return pid


def check_told_once(folder: Path, pid: int, request_id: str, how: str) -> str:
    found = wait_for_death(folder, pid)
    assert len(found) == 1, found
    line = found[0]
    assert re.search(
        rf"WARNING - WORKER DIED \| pid {pid} \| {how} \| in flight: GET /hold "
        rf"\(id {re.escape(request_id)}, \d+\.\d\ds, RSS \+(\d+\.\d\d)MB\) \| RSS ", line), line
    held = float(re.search(r"RSS \+(\d+\.\d\d)MB\)", line).group(1))
    assert held >= 35, f"the 40 MB the request held are not in its RSS change: {line}"
    return line


@pytest.mark.parametrize("worker_class,app,extra", [
    ("sync", "wsgi_app", ()),
    ("sync", "wsgi_app", ("--preload",)),  # workers forked from the configured arbiter
    ("uvicorn.workers.UvicornWorker", "asgi_app", ()),
])
def test_gunicorn_tells_a_killed_workers_requests_once_with_the_signal(tmp_path, worker_class,
                                                                        app, extra):
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    request_id = f"death-{uuid.uuid4().hex[:12]}"
    with server(*gunicorn(worker_class, app, *extra), cwd=tmp_path, port_pattern=GUNICORN_PORT,
                stop_signal=signal.SIGTERM) as served:
        pid = kill_serving_worker(served.url, tmp_path, request_id)
        line = check_told_once(tmp_path, pid, request_id, "SIGKILL")
        assert f"told by gunicorn arbiter pid {served.proc.pid}" in line
        # Siblings look once a second and leave a live arbiter its grace: none tells it again.
        time.sleep(SUPERVISOR_GRACE_S + 2)
        assert httpx.get(served.url + "/ok", timeout=30).status_code == 200  # a replacement serves
    assert len(deaths(tmp_path)) == 1, deaths(tmp_path)
    assert not list((tmp_path / "logs" / ".workers").glob("*.rec")), "a graceful exit left one"


def test_uvicorn_workers_a_sibling_tells_a_killed_workers_requests_once(tmp_path):
    request_id = f"death-{uuid.uuid4().hex[:12]}"
    with server(*UVICORN_WORKERS, cwd=tmp_path, port_pattern=UVICORN_PORT) as served:
        pid = kill_serving_worker(served.url, tmp_path, request_id)
        line = check_told_once(tmp_path, pid, request_id, "unknown")
        told_by = int(re.search(r"told by pid (\d+)", line).group(1))
        assert told_by not in (pid, served.proc.pid)
        time.sleep(3)
    assert len(deaths(tmp_path)) == 1, deaths(tmp_path)


def test_gunicorn_recycles_and_restarts_tell_no_death(tmp_path):
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    with server(*gunicorn("sync", "wsgi_app", "--max-requests", "3"), cwd=tmp_path,
                port_pattern=GUNICORN_PORT, stop_signal=signal.SIGTERM) as served:
        for _ in range(12):  # each worker recycled at least once
            assert httpx.get(served.url + "/ok", timeout=30).status_code == 200
        os.kill(served.proc.pid, signal.SIGHUP)  # every worker replaced gracefully
        time.sleep(4)
        for _ in range(4):
            assert httpx.get(served.url + "/ok", timeout=30).status_code == 200
        time.sleep(2)
    assert "Autorestarting worker" in served.err.read_text()
    assert deaths(tmp_path) == []
    assert not list((tmp_path / "logs" / ".workers").iterdir())


def test_gunicorn_stopping_uvicorn_workers_without_lifespan_tells_no_death(tmp_path):
    # uvicorn ends its worker by SIGTERM's default action after a graceful stop; without a
    # lifespan shutdown nothing closed the record, and the arbiter sees SIGTERM.
    (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
    with server(*gunicorn("uvicorn.workers.UvicornWorker", "bare_asgi_app"), cwd=tmp_path,
                port_pattern=GUNICORN_PORT, stop_signal=signal.SIGTERM) as served:
        assert httpx.get(served.url + "/ok", timeout=30).status_code == 200
        time.sleep(1)
    assert "was sent SIGTERM" in served.err.read_text()
    assert deaths(tmp_path) == []


def test_uvicorn_workers_restart_tells_no_death(tmp_path):
    with server(*UVICORN_WORKERS, cwd=tmp_path, port_pattern=UVICORN_PORT) as served:
        for _ in range(4):
            assert httpx.get(served.url + "/ok", timeout=30).status_code == 200
        os.kill(served.proc.pid, signal.SIGHUP)  # uvicorn replaces each worker gracefully
        deadline = time.monotonic() + 30
        while "Terminated child process" not in served.err.read_text() \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)
        assert httpx.get(served.url + "/ok", timeout=30).status_code == 200
    assert deaths(tmp_path) == []
    assert not list((tmp_path / "logs" / ".workers").iterdir())


# --- A real OOM kill in a memory cgroup of our own ---------------------------------------

def _own_memory_cgroup() -> Path:
    """A new memory cgroup under this process's own (v2, else v1), or skip saying why."""
    from sherlock_ai.deaths.cgroup import memory_cgroup

    counter, _ = memory_cgroup()
    if not counter:
        pytest.skip("no memory cgroup counting OOM kills is readable here")
    parent = Path(counter).parent
    child = parent / f"sherlock_ai_test_{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup under {parent}: {exc}")
    if counter.endswith("memory.events") and not (child / "memory.max").exists():
        child.rmdir()
        pytest.skip(f"the memory controller is not enabled for children of {parent}")
    return child


def _limit(cgroup: Path, limit: int) -> None:
    if (cgroup / "memory.max").exists():
        (cgroup / "memory.max").write_text(str(limit))
        if (cgroup / "memory.swap.max").exists():
            (cgroup / "memory.swap.max").write_text("0")
    else:
        (cgroup / "memory.limit_in_bytes").write_text(str(limit))
        if (cgroup / "memory.memsw.limit_in_bytes").exists():
            (cgroup / "memory.memsw.limit_in_bytes").write_text(str(limit))


# Puts itself in the cgroup of argv[1], then becomes gunicorn.
IN_CGROUP = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
             "os.execv(sys.executable, [sys.executable] + sys.argv[2:])")


def test_a_worker_killed_by_the_oom_killer_is_named_its_victim(tmp_path):
    cgroup = _own_memory_cgroup()
    try:
        _limit(cgroup, 400 << 20)
        (tmp_path / "gunicorn_conf.py").write_text(GUNICORN_CONF)
        request_id = f"oom-{uuid.uuid4().hex[:12]}"
        with server("-c", IN_CGROUP, str(cgroup / "cgroup.procs"), *gunicorn("sync", "wsgi_app"),
                    cwd=tmp_path, port_pattern=GUNICORN_PORT,
                    stop_signal=signal.SIGTERM) as served:
            try:
                httpx.get(served.url + "/grow?mb=2000", headers={"X-Request-ID": request_id},
                          timeout=120)
                pytest.fail("a request growing past the cgroup's limit was answered")
            except httpx.HTTPError:
                pass
            pid = int((tmp_path / "pids" / request_id).read_text())
            found = wait_for_death(tmp_path, pid)
            assert len(found) == 1, found
            assert re.search(
                rf"WORKER DIED \| pid {pid} \| SIGKILL, likely the OOM killer \(oom_kill "
                rf"(\d+) -> (\d+) in {re.escape(str(cgroup))}/memory\.(events|oom_control)\) \| "
                rf"in flight: GET /grow \(id {request_id}, ", found[0]), found[0]
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                cgroup.rmdir()
                break
            except OSError:
                time.sleep(0.2)
