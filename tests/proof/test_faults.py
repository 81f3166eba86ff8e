"""Faults under a real uvicorn on 127.0.0.1: handlers that raise or return 5xx, clients that
give up, a log file on a full disk, and no /proc: the app keeps serving every request
correctly, measurements end with the right status, and problems are reported once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import sherlock_ai
from process_tree import stop_group
from web_support import ROOT, SUPPORT, server

pytestmark = pytest.mark.servers

PROOF_APP = str(SUPPORT / "proof_app.py")


def memory_records(logs: Path):
    lines = (logs / "monitoring.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["request_id"]: r for r in map(json.loads, lines) if r.get("kind") == "memory"}


def test_raise_5xx_and_a_client_that_gives_up_leave_a_clean_context(tmp_path):
    logs = tmp_path / "logs"
    with server(PROOF_APP, str(logs), cwd=tmp_path) as app, \
            httpx.Client(base_url=app.url, timeout=10) as client:
        failed = client.get("/fail", headers={"Connection": "close"})
        down = client.get("/unavailable")
        with pytest.raises(httpx.ReadTimeout):
            client.get("/slow", params={"seconds": 1.5}, timeout=0.2)
        after = [client.get(f"/json/{n}") for n in range(20)]
    assert (failed.status_code, down.status_code) == (500, 503)
    records = memory_records(logs)
    fail = records[failed.headers["X-Request-ID"]]
    assert (fail["status"], fail["status_code"]) == ("ERROR", 500)
    assert fail["error"].startswith("HTTP 500")
    unavailable = records[down.headers["X-Request-ID"]]
    assert (unavailable["status"], unavailable["error"]) == ("ERROR", "HTTP 503")
    # The request the client gave up on still ended its measurement once, after the handler.
    slow = [r for r in records.values() if r["name"] == "GET /slow"]
    assert len(slow) == 1 and slow[0]["duration"] >= 1.5
    # Every later request has its own id, in the response, the handler and the record.
    for response in after:
        rid = response.headers["X-Request-ID"]
        assert response.json()["id"] == rid and records[rid]["status"] == "SUCCESS"
    assert len({r.headers["X-Request-ID"] for r in after}) == 20


def test_a_full_disk_at_run_time_is_reported_once_and_serving_goes_on(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    # monitoring.log is on a "disk" that is always full: every write fails with ENOSPC.
    (logs / "monitoring.log").symlink_to("/dev/full")
    with server(PROOF_APP, str(logs), "log", cwd=tmp_path) as app, \
            httpx.Client(base_url=app.url, timeout=10) as client:
        responses = [client.get(f"/json/{n}") for n in range(150)]
    assert [r.status_code for r in responses] == [200] * 150
    assert all(r.json()["id"] == r.headers["X-Request-ID"] for r in responses)
    stderr = (tmp_path / "server.err").read_text()
    assert stderr.count("cannot write") == 1, stderr[-2000:]
    assert "No space left on device" in stderr
    # The other files kept every record.
    app_log = (logs / "app.log").read_text().splitlines()
    assert sum(" - MEMORY | GET /json/{n} | SUCCESS" in line for line in app_log) == 150


def _can_hide_proc() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /proc"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_hide_proc(), reason="needs a private mount namespace (unshare)")
def test_without_proc_a_real_server_serves_and_figures_degrade(tmp_path):
    logs = tmp_path / "logs"
    wrapper = ["unshare", "-m", "sh", "-c",
               'mount -t tmpfs none /proc && exec "$0" "$@"', sys.executable]
    proc_root = tmp_path / "run"
    proc_root.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), str(SUPPORT)])}
    out = open(proc_root / "server.err", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(wrapper + [PROOF_APP, str(logs)], stderr=out, env=env,
                               cwd=proc_root, start_new_session=True)
    try:
        port = None
        for _ in range(300):
            text = (proc_root / "server.err").read_text(errors="replace")
            if "LISTENING" in text:
                port = int(text.split("LISTENING ")[1].split()[0])
                break
            if process.poll() is not None:
                break
            time.sleep(0.1)
        assert port, (proc_root / "server.err").read_text()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            responses = [client.get(f"/json/{n}") for n in range(30)]
    finally:
        stop_group(process, signal.SIGTERM)
        out.close()
    assert [r.status_code for r in responses] == [200] * 30
    records = memory_records(logs)
    assert len(records) == 30
    assert all("rss" not in r and r["status"] == "SUCCESS" for r in records.values())
    assert sherlock_ai.is_valid_request_id(responses[0].headers["X-Request-ID"])
    assert (proc_root / "server.err").read_text().count("rss.psutil") == 1
