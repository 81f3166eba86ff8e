"""The flight record and the telling of deaths, with real processes and signals: what a record
holds while requests are in flight, one line per death however many processes look at once,
nothing for a graceful exit or a forked child that serves nothing, the JSON fields, the
Prometheus counter, the report after the fact and a records folder that cannot be written."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import sherlock_ai
from sherlock_ai.__main__ import main
from sherlock_ai.consumers import registry
from sherlock_ai.deaths import recorder
from sherlock_ai.deaths.record import HEADER_PARTS, HEADER_SIZE, SLOTS, FlightRecord, read_record
from sherlock_ai.deaths.telling import tell_death
from sherlock_ai.deaths.watch import SUPERVISOR_GRACE_S, look
from sherlock_ai.engine.requests import RequestMeter
from sherlock_ai.exporters.prometheus import PrometheusExporter
from sherlock_ai.integrations.asgi import instrument_app

ROOT = Path(__file__).resolve().parents[2]

# A process that records like a web worker: one request ended, one (argv[2]) in flight with
# 30 MB held, then waits to be killed.
CHILD = """
import os, sys, time
import sherlock_ai
from sherlock_ai.consumers import registry
from sherlock_ai.engine.requests import RequestMeter
sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=sys.argv[1], console_enabled=False))
meter = RequestMeter(protocol="wsgi", min_duration=0.0, trace_malloc=False, listeners=registry)
sherlock_ai.set_request_id("done-1")
meter.open("GET", "/done").end("GET /done", {})
sherlock_ai.set_request_id("held-1")
held = meter.open("POST", sys.argv[2])
kept = b"x" * (30 << 20)
allocated = time.time()
from sherlock_ai.deaths import recorder
from sherlock_ai.deaths.record import read_record
while read_record(recorder.current.path).readings[-1][0] <= allocated:
    time.sleep(0.05)  # until the watcher's reading after the allocation
open(os.path.join(sys.argv[1], "ready"), "w").close()
time.sleep(120)
"""


def killed_child(logs: Path, path: str = "/upload", supervised: bool = False) -> int:
    """Run CHILD, SIGKILL it once it holds its request; returns its pid (reaped).
    ``supervised``: its record names this process as the supervisor that tells its death."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(recorder.SUPERVISOR_ENV, None)
    if supervised:
        env[recorder.SUPERVISOR_ENV] = str(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(logs), path], env=env)
    deadline = time.monotonic() + 30
    while not (logs / "ready").exists():
        assert child.poll() is None and time.monotonic() < deadline, "the child did not start"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    return child.pid


def asgi_get(app, path: str, headers=None) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path, headers=headers or {})

    return asyncio.run(call())


def run_python(code: str, logs: Path) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter with ``logs`` as its argument; it must succeed."""
    out = subprocess.run([sys.executable, "-c", code, str(logs)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def died_lines(logs: Path, name: str = "monitoring.log") -> List[str]:
    return [line for line in (logs / name).read_text().splitlines() if "WORKER DIED" in line]


def test_a_request_in_flight_is_in_the_record_until_it_ends(tmp_path):
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    api = FastAPI()

    @api.get("/look")
    async def look_at_record():
        view = read_record(recorder.current.path)
        return [[e.kind, e.name, e.request_id] for e in view.in_flight]

    response = asgi_get(instrument_app(api, trust_incoming_id=True), "/look",
                        {"X-Request-ID": "look-1"})
    assert response.json() == [["GET", "/look", "look-1"]]
    assert read_record(recorder.current.path).in_flight == []


def test_the_record_header_parts_do_not_overlap():
    parts = sorted(HEADER_PARTS, key=lambda part: part[0])
    ends = [at + layout.size for at, layout in parts]
    assert all(end <= next_at for end, (next_at, _) in zip(ends, parts[1:]))
    assert ends[-1] <= HEADER_SIZE


def test_the_record_is_not_in_a_traced_requests_figures(tmp_path):
    kept = []

    class Kept(sherlock_ai.Consumer):
        def measurement_ended(self, measurement):
            kept.append(measurement)

    consumer = sherlock_ai.add_consumer(Kept())
    meter = RequestMeter(protocol="asgi", min_duration=0.0, trace_malloc=True,
                         listeners=registry)
    record = FlightRecord(tmp_path, os.getpid(), 1, "", -1, 0, 0)
    sherlock_ai.set_request_id("r" * 100)
    try:
        for _ in range(3):  # the engine's first requests allocate what it keeps
            meter.open("GET", "/warm-up").end("GET /p", {})
        kept.clear()
        for current in (None, record) * 5:
            recorder.current = current
            meter.open("GET", "/" + "p" * 90).end("GET /p", {})
    finally:
        recorder.current = None
        sherlock_ai.remove_consumer(consumer)
        record.close()
    without, with_record = kept[0::2], kept[1::2]
    # The engine's own figures vary by a few dozen bytes from one request to the next; the
    # entry's strings (about 300 bytes here) would show above them.
    assert max(m.traced_peak for m in with_record) <= max(m.traced_peak for m in without)
    assert max(m.traced for m in with_record) <= max(m.traced for m in without)


def test_requests_beyond_the_slots_are_counted(tmp_path):
    record = FlightRecord(tmp_path, os.getpid(), 1, "", -1, 0, 0)
    slots = [record.opened("GET", f"/{i}", 1 << 20) for i in range(SLOTS + 2)]
    assert slots[-2:] == [-1, -1]
    view = read_record(record.path)
    assert len(view.in_flight) == SLOTS and view.not_recorded == 2
    record.closed(slots[0])
    assert len(read_record(record.path).in_flight) == SLOTS - 1
    record.close()
    assert not record.path.exists()


@pytest.mark.servers
def test_a_death_is_told_once_among_processes_looking_at_once(tmp_path):
    pid = killed_child(tmp_path, "/upload\nWORKER DIED | pid 1 | forged")
    lookers = [subprocess.Popen([sys.executable, "-c", (
        "import sys, sherlock_ai; from pathlib import Path\n"
        "from sherlock_ai.deaths.watch import look\n"
        "sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=sys.argv[1], "
        "console_enabled=False, worker_records=None))\n"
        "look(Path(sys.argv[1]) / '.workers', {}, 'looker')\n"), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in range(4)]
    assert [looker.wait(60) for looker in lookers] == [0, 0, 0, 0]
    lines = died_lines(tmp_path)
    assert len(lines) == 1, lines
    assert (f"WARNING - WORKER DIED | pid {pid} | unknown | in flight: POST "
            r"/upload\x0aWORKER DIED | pid 1 | forged (id held-1, ") in lines[0]
    assert "RSS +30." in lines[0] and lines[0].endswith("| told by looker")
    assert [p.suffix for p in (tmp_path / ".workers").iterdir()] == [".died"]


@pytest.mark.servers
def test_the_supervisors_own_watcher_leaves_its_childs_death_to_its_reap(tmp_path):
    pid = killed_child(tmp_path, supervised=True)
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=tmp_path, console_enabled=False, worker_records=None))
    (record,) = (tmp_path / ".workers").iterdir()
    assert read_record(record).supervisor == os.getpid()
    # Seen dead long ago: past any grace, it is still the reap's to tell, with the signal.
    look(tmp_path / ".workers", {record.name: time.monotonic() - SUPERVISOR_GRACE_S - 1},
         "the watcher")
    assert died_lines(tmp_path) == []
    tell_death(record, "the supervisor", signal=signal.SIGKILL)
    (line,) = died_lines(tmp_path)
    assert f"WORKER DIED | pid {pid} | SIGKILL | in flight: POST /upload " in line
    assert line.endswith("| told by the supervisor")


@pytest.mark.servers
def test_a_graceful_exit_leaves_no_record_and_tells_nothing(tmp_path):
    code = CHILD.replace("time.sleep(120)", "sys.exit(0)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path), "/x"], env=env,
                          timeout=60).returncode == 0
    assert list((tmp_path / ".workers").iterdir()) == []
    assert died_lines(tmp_path) == []


@pytest.mark.servers
def test_a_forked_child_that_serves_nothing_keeps_no_record(tmp_path):
    # A multiprocessing-style child leaves through os._exit: no record, so no death.
    code = (
        "import os, sys, time, sherlock_ai\n"
        "sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=sys.argv[1], "
        "console_enabled=False))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(0.2)\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "time.sleep(2.5)  # the parent's watcher looks twice\n"
        "print(sorted(os.listdir(os.path.join(sys.argv[1], '.workers'))))\n")
    out = run_python(code, tmp_path)
    assert len(eval(out.stdout)) == 1  # the parent's own
    assert died_lines(tmp_path) == []


@pytest.mark.servers
def test_the_json_line_carries_the_death_as_fields(tmp_path):
    pid = killed_child(tmp_path)
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=tmp_path, log_format_type="json", console_enabled=False, worker_records=None))
    look(tmp_path / ".workers", {}, "the test")
    (line,) = [json.loads(text) for text in (tmp_path / "monitoring.jsonl").read_text()
               .splitlines() if "worker_died" in text]
    assert line["kind"] == "worker_died" and line["level"] == "WARNING"
    assert line["pid"] == pid and line["reported_by"] == os.getpid()
    assert line["signal"] is None and line["cause"] == "unknown"
    (request,) = line["in_flight"]
    assert request["method"] == "POST" and request["name"] == "/upload"
    assert request["request_id"] == "held-1" and request["rss_change"] >= 30 << 20
    assert line["message"].startswith(f"WORKER DIED | pid {pid} | unknown | in flight: ")


@pytest.mark.servers
def test_the_death_line_reaches_the_set_ups_files_after_an_apps_dict_config(tmp_path):
    pid = killed_child(tmp_path)
    # The root logger gets the app's own handlers, as with Django's LOGGING.
    code = (
        "import logging.config, sys, sherlock_ai\n"
        "from pathlib import Path\n"
        "from sherlock_ai.deaths.watch import look\n"
        "sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(logs_dir=sys.argv[1], "
        "console_enabled=False, worker_records=None))\n"
        "logging.config.dictConfig({'version': 1, 'handlers': {'null': "
        "{'class': 'logging.NullHandler'}}, 'root': {'handlers': ['null']}})\n"
        "look(Path(sys.argv[1]) / '.workers', {}, 'the test')\n")
    run_python(code, tmp_path)
    (line,) = died_lines(tmp_path, "app.log")
    assert f"WORKER DIED | pid {pid} | unknown | in flight: POST /upload " in line


@pytest.mark.servers
def test_prometheus_counts_deaths_by_cause(tmp_path):
    killed_child(tmp_path)
    registry = CollectorRegistry()
    exporter = sherlock_ai.add_consumer(PrometheusExporter(registry=registry))
    try:
        look(tmp_path / ".workers", {}, "the test")
    finally:
        sherlock_ai.remove_consumer(exporter)
    assert registry.get_sample_value("sherlock_worker_deaths_total", {"cause": "unknown"}) == 1


@pytest.mark.servers
def test_the_report_shows_a_death_nobody_told(tmp_path, capsys):
    pid = killed_child(tmp_path)
    assert main(["report", str(tmp_path), "--html", str(tmp_path / "page.html")]) == 0
    out = capsys.readouterr().out
    assert "Worker deaths" in out and str(pid) in out
    assert "POST /upload (id held-1, >=" in out and "nobody" in out
    assert "Worker deaths" in (tmp_path / "page.html").read_text()
    # The report only reads: a process that looks later still tells it in the logs.
    assert [p.suffix for p in (tmp_path / ".workers").iterdir()] == [".rec"]


@pytest.mark.servers
def test_the_report_shows_a_told_death_with_its_teller(tmp_path, capsys):
    pid = killed_child(tmp_path)
    look(tmp_path / ".workers", {}, "the test")
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(pid) in out and f"pid {os.getpid()}" in out and ">=" not in out
    # The verdict written into the record left the in-flight request's start as it was.
    seconds = float(re.search(r"POST /upload \(id held-1, (\d+\.\d\d)s,", out).group(1))
    assert seconds < 30


def test_a_records_folder_that_cannot_be_made_is_said_once_and_requests_go_on(tmp_path,
                                                                               capfd):
    (tmp_path / "blocked").write_text("a file where the folder would be")
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=tmp_path, console_enabled=False, worker_records="blocked/records"))
    assert recorder.current is None
    assert "worker record in" in capfd.readouterr().err
    api = FastAPI()

    @api.get("/ok")
    async def ok():
        return "ok"

    assert asgi_get(instrument_app(api), "/ok").status_code == 200
    assert "MEMORY | GET /ok | SUCCESS" in (tmp_path / "monitoring.log").read_text()



def test_a_reading_is_stamped_before_its_rss_is_read(tmp_path, monkeypatch):
    # A reading stamped after its RSS was read looks later than it is: memory allocated
    # between the read and the stamp would seem to be in it.
    from sherlock_ai.deaths import watch

    record = FlightRecord(tmp_path, os.getpid(), 1, "", -1, 0, 0)
    stopping = threading.Event()
    read_at = []

    def rss():
        read_at.append(time.time())
        stopping.set()
        return 123 << 20

    monkeypatch.setattr(watch, "current_rss", rss)
    try:
        watch._watch(record, tmp_path, "", stopping)
        (stamp, _), = [r for r in read_record(record.path).readings if r[1] == 123 << 20]
    finally:
        record.close()
    assert stamp <= read_at[0]
