"""Servers the tests start are gone, workers included, when the test ends, even when it fails;
and a process that escapes is found."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

import process_tree
from web_support import ROOT, server

pytestmark = pytest.mark.servers

# As the load proof runs it: two uvicorn workers keeping idle connections for 300 s.
GUNICORN = ["-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
            "-b", "127.0.0.1:0", "--keep-alive", "300", "--chdir", str(ROOT / "tests" / "proof"),
            "proof_app:app"]


def alive(pid):
    try:
        fields = process_tree._stat(pid)
    except OSError:
        return False
    return fields[0] != "Z"


def test_gunicorn_workers_holding_idle_connections_are_gone_after_a_failing_test(
        tmp_path, monkeypatch):
    monkeypatch.setenv("SHERLOCK_PROOF_LOGS", str(tmp_path / "logs"))
    workers = []
    failing = pytest.raises(AssertionError, match="the test failed")
    with failing, server(*GUNICORN, cwd=tmp_path,
                         port_pattern=r"Listening at: http://127\.0\.0\.1:(\d+)") as app:
        idle = [socket.create_connection(("127.0.0.1", app.port)) for _ in range(4)]
        for connection in idle:
            connection.sendall(b"GET /json/1 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert connection.recv(65536).startswith(b"HTTP/1.1 200")
        workers = [p for p in process_tree.group_members(app.proc.pid) if p != app.proc.pid]
        assert len(workers) == 2
        raise AssertionError("the test failed")
    # The connections are still open: the workers did not get to finish them.
    assert not [pid for pid in workers if alive(pid)]
    for connection in idle:
        connection.close()


def test_an_orphaned_process_of_the_run_is_found(tmp_path):
    # A child that forks a grandchild and exits: the grandchild's parent becomes PID 1, as a
    # gunicorn worker's does when its master is killed alone.
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.closerange(0, 3)\n"
            "    time.sleep(60)\n"
            "else:\n"
            "    print(os.getpid(), flush=True)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=30)
    parent = int(done.stdout.split()[0])
    escaped = process_tree.escaped_processes(os.environ[process_tree.MARKER])
    process_tree.kill(escaped)
    assert len(escaped) == 1 and escaped[0] != parent
