"""Each line is in the kernel before its measurement returns: a server killed with SIGKILL
right after its responses has every finished request's line; a process that forks while its
threads write lines (gunicorn's preload_app) writes none twice and its children hang on no lock."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import sys

import httpx
import pytest

import process_tree
from web_support import ROOT, server

pytestmark = pytest.mark.servers

APP = '''
import sherlock_ai
from fastapi import FastAPI
from sherlock_ai import MemoryTracker
from sherlock_ai.integrations.asgi import instrument_app

sherlock_ai.sherlock_ai()  # the default set-up: logs/ in the working directory
api = FastAPI()


@api.get("/work/{n}")
async def work(n: int):
    with MemoryTracker(f"work {n}"):
        kept = [n] * 1000
    return {"n": len(kept)}


app = instrument_app(api, trust_incoming_id=True)
'''


def test_sigkill_right_after_the_responses_loses_no_finished_line(tmp_path):
    (tmp_path / "killed_app.py").write_text(APP)
    count = 300
    with server("-m", "uvicorn", "killed_app:app", "--port", "0", cwd=tmp_path,
                port_pattern=r"Uvicorn running on http://127\.0\.0\.1:(\d+)",
                stop_signal=signal.SIGKILL) as uvicorn, \
            httpx.Client(base_url=uvicorn.url) as client:
        for n in range(count):
            assert client.get(f"/work/{n}", headers={"X-Request-ID": f"kill-{n}"}).status_code \
                == 200
        # Leaving the block kills the server at once: no shutdown, no flush, no atexit.
    assert uvicorn.proc.returncode == -signal.SIGKILL
    text = (tmp_path / "logs" / "monitoring.log").read_text(encoding="utf-8")
    # The tracker inside each route finished before its response was sent.
    for n in range(count):
        assert text.count(f" - kill-{n} - MonitoringLogger - INFO - MEMORY | work {n} | ") == 1
    # The request's own line is written once its response went out; the next request on the
    # connection is served only after that, so every request but the last is known finished.
    for n in range(count - 1):
        assert text.count(f" - kill-{n} - MonitoringLogger - INFO - MEMORY | GET /work/{{n}} |") \
            == 1


FORKING = '''
import json, logging, os, sys, threading
import sherlock_ai
from sherlock_ai import LogFileConfig, LoggingConfig, Measurement

files = {"app": LogFileConfig("app", max_bytes=20_000, backup_count=1000)}
sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=sys.argv[1], console_enabled=False,
                                      log_files=files, log_format_type=sys.argv[2]))


def line(name):
    sherlock_ai.log_line.measurement_ended(
        Measurement("memory", name, "SUCCESS", 0.001, logging.INFO, rss=1, rss_change=0))


stop, made = threading.Event(), {}


def busy(t):
    i = 0
    while not stop.is_set():
        line(f"parent-{t}-{i}")
        i += 1
    made[t] = i


threads = [threading.Thread(target=busy, args=(t,)) for t in range(3)]
for thread in threads:
    thread.start()
children = []
for k in range(30):
    pid = os.fork()
    if pid == 0:
        for j in range(40):
            line(f"child-{k}-{j}")
        os._exit(0)
    children.append(pid)
for pid in children:
    assert os.waitpid(pid, 0)[1] == 0
stop.set()
for thread in threads:
    thread.join()
print(json.dumps({"made": made, "pid": os.getpid()}))
'''


def names_in(folder, ext, parent):
    found = []
    for path in folder.iterdir():
        if path.name.startswith("app."):
            for line in path.read_text(encoding="utf-8").splitlines():
                if ext == "json":
                    record = json.loads(line)
                    # A child's lines carry its own pid, the parent's the parent's.
                    assert (record["pid"] == parent) is record["name"].startswith("parent-")
                    found.append(record["name"])
                else:
                    found.append(line.split(" | ")[1])
    return found


def test_forking_while_threads_write_writes_no_line_twice_and_holds_no_lock(tmp_path):
    for kind in ("log", "json"):
        logs = tmp_path / kind
        proc = subprocess.Popen([sys.executable, "-c", FORKING, str(logs), kind],
                                stdout=subprocess.PIPE, cwd=ROOT, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=120)  # a child stuck on a lock never ends
        finally:
            process_tree.stop_group(proc, signal.SIGKILL)
        assert proc.returncode == 0
        result = json.loads(out)
        made = {int(t): n for t, n in result["made"].items()}
        counts = collections.Counter(names_in(logs, kind, result["pid"]))
        expected = [f"parent-{t}-{i}" for t, n in made.items() for i in range(n)]
        expected += [f"child-{k}-{j}" for k in range(30) for j in range(40)]
        assert set(counts) == set(expected)
        assert max(counts.values()) == 1  # none written twice
        assert len(list(logs.glob("app.*"))) > 2  # rotations happened around the forks
