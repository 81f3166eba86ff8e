"""Real parts of the Celery tests: a Redis broker (Debian's ``redis-server``) on a free
127.0.0.1 port, ``celery worker`` processes running ``celery_tasks``, and their JSON lines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest

from process_tree import stop_group
from web_support import ROOT, SUPPORT, accepts

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_broker(folder: Path) -> Iterator[str]:
    """A Redis server on a free 127.0.0.1 port, persisting nothing (``--save ''``), its files
    in ``folder``; yields its URL and stops it at the end, also when the test fails."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(folder / "redis.log", "wb") as out:
        proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n"
                                   f"{(folder / 'redis.log').read_text()}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_group(proc, signal.SIGTERM)


EXAMPLES = ROOT / "examples"


def environment(broker: str, logs: Optional[Path], options: Dict[str, Any]) -> Dict[str, str]:
    env = {**os.environ, "BROKER_URL": broker,
           "SHERLOCK_TASK_OPTIONS": json.dumps(options),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(SUPPORT), str(EXAMPLES)])}
    env.pop("SHERLOCK_LOGS", None)
    if logs is not None:
        env["SHERLOCK_LOGS"] = str(logs)
    return env


class Worker:
    """A ``celery -A celery_tasks worker`` process group (the main process and its pool)."""

    def __init__(self, folder: Path, broker: str, pool: str, concurrency: int,
                 options: Dict[str, Any], loglevel: str,
                 metrics_port: Optional[int] = None, module: str = "celery_tasks",
                 arguments: Sequence[str] = ()) -> None:
        self.logs = folder / "logs"
        self.err = folder / "worker.err"
        argv = [sys.executable, "-m", "celery", "-A", module, "worker", "-P", pool,
                "-c", str(concurrency), "-l", loglevel, "--without-gossip", "--without-mingle",
                "--without-heartbeat", "-n", f"test-{pool}@%h", *arguments]
        env = environment(broker, self.logs, options)
        if metrics_port is not None:
            env["METRICS_PORT"] = str(metrics_port)
        with open(folder / "worker.out", "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=folder, stdout=out, stderr=err, env=env,
                                         start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        # Its console says " ready." at INFO; at WARNING, sherlock_ai's warning about that
        # level (in a JSON file of celery_tasks' set-up) is the sign. Tasks sent earlier
        # wait in Redis in any case.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited early:\n{self.err.read_text()}")
            if b" ready." in self.err.read_bytes() or self.lines():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not start:\n{self.err.read_text()}")

    def stop(self) -> None:
        """Celery's warm shutdown: SIGTERM to the main process alone, which lets the running
        tasks finish and stops its children (SIGTERM to a prefork child kills it mid-task:
        ``WorkerLostError``); then whatever of the group is left."""
        stop_group(self.proc, signal.SIGTERM, leader_only=True)

    def lines(self, file: str = "monitoring") -> List[dict]:
        path = self.logs / f"{file}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def wait_for(self, found: Callable[[List[dict]], bool], file: str = "monitoring",
                 timeout: float = 60.0) -> List[dict]:
        """The lines of ``file`` once ``found(lines)`` holds (they are written after the
        task's result is stored)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines(file)
            if found(lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


@contextmanager
def worker(folder: Path, broker: str, *, pool: str = "prefork", concurrency: int = 2,
           options: Optional[Dict[str, Any]] = None, loglevel: str = "INFO",
           metrics_port: Optional[int] = None, module: str = "celery_tasks",
           arguments: Sequence[str] = ()) -> Iterator[Worker]:
    """A real worker of ``module`` (``celery_tasks``, or an example) on ``broker``, with
    ``celery_tasks``' JSON logs in ``folder/logs`` (its Prometheus metrics on
    ``metrics_port``, when given; ``arguments``: more of ``celery worker``'s); stopped at the
    end (also when the test fails)."""
    folder.mkdir(parents=True, exist_ok=True)
    process = Worker(folder, broker, pool, concurrency, options or {}, loglevel, metrics_port,
                     module, arguments)
    try:
        yield process
    finally:
        process.stop()


def task_lines(lines: List[dict], task: Optional[str] = None) -> List[dict]:
    """The MEMORY lines of task runs (of ``task`` when given)."""
    return [r for r in lines if r.get("kind") == "memory" and r.get("name", "").startswith(
        "TASK ") and (task is None or r["name"] == f"TASK {task}")]
