"""Four gunicorn workers share one logs/ folder with rotation forced every few kilobytes:
every request's line is in the files exactly once, in each worker's order, and the backups are
full files (one rotation per filling, not one per worker)."""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path

import httpx
import pytest

from web_support import GUNICORN_CONF, server

pytestmark = pytest.mark.servers

MAX_BYTES = 6000
APP = f'''
import itertools, os
from flask import Flask
import sherlock_ai
from sherlock_ai.integrations.flask import Sherlock
from sherlock_ai.logs.setup import LoggingConfig

config = LoggingConfig()  # the default set-up: four files and the console
for file in config.log_files.values():
    file.max_bytes, file.backup_count = {MAX_BYTES}, 500
sherlock_ai.sherlock_ai(config)
served = itertools.count(1)
app = Flask("shared_logs")


@app.get("/work")
def work():
    return {{"pid": os.getpid(), "n": next(served)}}


Sherlock(app, trust_incoming_id=True)
'''
CONFS = {
    # Only sherlock_ai's handlers listen: lines take the direct path.
    "plain": "bind = '127.0.0.1:0'\nworkers = 4\n",
    # The documented gunicorn.conf.py: gunicorn's console on the root, lines through logging.
    "documented": GUNICORN_CONF.replace("workers = 1", "workers = 4"),
}
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - (req-\d{5}|-) - MonitoringLogger - INFO - "
                  r"MEMORY \| GET /work \| SUCCESS \| \d+\.\d{3}s \| Current: \S+ \| Change: \S+$")
REQUESTS, CLIENTS = 1200, 4


def family(folder: Path, stem: str):
    """``stem.log`` and its backups, oldest first."""
    backups = sorted(folder.glob(f"{stem}.log.*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, folder / f"{stem}.log"]


@pytest.mark.parametrize("conf", sorted(CONFS))
def test_four_workers_rotating_one_folder_keep_every_line_once_and_in_order(tmp_path, conf):
    assert "workers = 4" in CONFS[conf]
    (tmp_path / "shared_logs.py").write_text(APP)
    (tmp_path / "gunicorn_conf.py").write_text(CONFS[conf])
    served = {}

    def client(offset):
        with httpx.Client(base_url=gunicorn.url, timeout=30) as http:
            for i in range(offset, REQUESTS, CLIENTS):
                rid = f"req-{i:05d}"
                answer = http.get("/work", headers={"X-Request-ID": rid})
                assert answer.status_code == 200
                served[rid] = (answer.json()["pid"], answer.json()["n"])

    with server("-m", "gunicorn", "-c", "gunicorn_conf.py", "shared_logs:app", cwd=tmp_path,
                port_pattern=r"Listening at: http://127\.0\.0\.1:(\d+)",
                stop_signal=signal.SIGTERM) as gunicorn:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(served) == REQUESTS
    assert len({pid for pid, _ in served.values()}) > 1  # several workers really wrote
    logs = tmp_path / "logs"
    for stem in ("monitoring", "app"):
        files = family(logs, stem)
        assert len(files) > 20  # many rotations
        found = []
        for path in files:
            lines = path.read_text(encoding="utf-8").splitlines()
            mine = [line for line in lines if " - MonitoringLogger - " in line]
            for line in mine:
                assert LINE.match(line), line  # whole lines, none torn
            found += [line.split(" - ")[1] for line in mine]
        assert sorted(found) == sorted(served), stem  # every request exactly once
        for pid in {pid for pid, _ in served.values()}:
            order = [served[rid][1] for rid in found if served[rid][0] == pid]
            assert order == sorted(order), (stem, pid)  # in the order the worker made them
        line = max(len(line) + 1 for path in files for line in path.read_text().splitlines())
        for path in files[1:-1]:  # one rotation per filling: every backup is a full file
            assert MAX_BYTES - 2 * line <= path.stat().st_size <= MAX_BYTES + 5 * line, path
