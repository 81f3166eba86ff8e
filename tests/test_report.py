"""sherlock-ai report on logs written by a real app run: counts match what was sent, rotated
files are read once, bad lines are counted, hostile names are escaped in the HTML page."""

from __future__ import annotations

import asyncio
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import sherlock_ai
from sherlock_ai import LogFileConfig, LoggingConfig
from sherlock_ai.__main__ import main
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.report import ReadStats, build_report, read_logs
from sherlock_ai.report.html import render_html
from sherlock_ai.report.reader import log_files, parse_size
from sherlock_ai.report.stats import Report

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
    assert len(items.durations) == 40 and items.duration_at(0.5) <= items.durations[-1]
    assert report.timeline and all(rss > 1_000_000 for _, rss in report.timeline)


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
        if not path.name.startswith("app."):
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
    assert a.rss_changes == [-1536.0] and a.traced_peak_max == pytest.approx(30.33 * 1024)
    suspect = report.suspects["GET /a"]
    assert suspect.per_request == pytest.approx(4.04 * 1024)
    assert suspect.sites[0]["file"] == "app.py" and suspect.sites[0]["line"] == 80


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
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert html.escape(HOSTILE_ROUTE.replace("{n}", "")) in page
    assert "&lt;b&gt;evil.py:7" in page and "<b>evil" not in page
    assert page.count("<svg") == 2 and "<polyline" in page
    assert "GET /items/{item_id}" in page and "+4.04KB" in page


def _polyline_xs(page: str):
    points = re.search(r"<polyline [^>]*points='([^']*)'", page).group(1).split()
    return [float(point.split(",")[0]) for point in points]


def test_timeline_spreads_records_of_one_second_and_shows_a_single_point():
    # Text logs keep whole seconds: a short run logs every record in the same second.
    same_second = Report(timeline=[(1_700_000_000.0, 50e6)] * 40 + [(1_700_000_001.0, 51e6)])
    xs = _polyline_xs(render_html(same_second, ReadStats()))
    assert len(set(xs)) == 41 and xs == sorted(xs) and xs[-1] - xs[0] > 500
    # JSON logs keep milliseconds: ties spread over their millisecond, in order.
    xs = _polyline_xs(render_html(Report(timeline=[(1_700_000_000.25, 5e6)] * 3), ReadStats()))
    assert len(set(xs)) == 3 and xs == sorted(xs)
    single = render_html(Report(timeline=[(1_700_000_000.0, 5e6)]), ReadStats())
    assert "<circle" in single


# What the browser laid out: each chart's drawn size and how many of its shapes are visible.
MEASURE_CHARTS = """<script>
document.body.dataset.charts = [...document.querySelectorAll("svg")].map(svg => {
  const box = svg.getBoundingClientRect();
  const shapes = [...svg.querySelectorAll("polyline, rect, circle, line")]
    .filter(shape => shape.getBBox().width + shape.getBBox().height > 0).length;
  return `${Math.round(box.width)}x${Math.round(box.height)}:${shapes}`;
}).join(" ");
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_html_page_renders_in_headless_chromium(tmp_path):
    fastapi_run(tmp_path, "log")
    report, stats = report_of(tmp_path)
    page = tmp_path / "report.html"
    # The page itself has no script; a measuring one is added to a copy for the browser.
    page.write_text(render_html(report, stats).replace("</body>", MEASURE_CHARTS + "</body>"),
                    encoding="utf-8")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60).stdout
    assert "GET /items/{item_id}" in dom
    charts = re.search(r'data-charts="([^"]*)"', dom)
    assert charts is not None, dom[-2000:]
    drawn = [re.fullmatch(r"(\d+)x(\d+):(\d+)", chart).groups()
             for chart in charts.group(1).split()]
    assert len(drawn) == 2, charts.group(1)
    for width, height, shapes in drawn:
        assert int(width) > 100 and int(height) > 50 and int(shapes) > 0, charts.group(1)


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
