"""sherlock-ai report on the logs of a real uvicorn server restarted twice into one folder, with
rotation and gzip-compressed backups: processes kept apart, filters, JSON and CSV read back
against the records, the terminal table at 80 and 200 columns, the page in headless Chromium."""

from __future__ import annotations

import csv
import gzip
import html
import io
import json
import math
import re
import shutil
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import httpx
import pytest

from sherlock_ai.__main__ import main
from sherlock_ai.report import ReadStats, build_report, read_logs
from web_support import SUPPORT, server

LONG = "GET /users/{user_id}/orders/{order_id}/items/{item_id}/history"
SENT = {"GET /items/{item_id}": 30, "POST /cart/items": 20, "GET /fail": 4, LONG: 3}


def serve_twice(root: Path, fmt: str) -> List[int]:
    """Two runs of the server into ``root / "logs"``, a gap between them; their pids."""
    logs = root / "logs"
    pids = []
    for run in range(2):
        cwd = root / f"run{run}"
        cwd.mkdir()
        with server(str(SUPPORT / "report_server.py"), str(logs), fmt, "6000", cwd=cwd) as srv, \
                httpx.Client(base_url=srv.url, timeout=30) as client:
            pids.append(srv.proc.pid)
            for n in range(SENT["GET /items/{item_id}"]):
                assert client.get(f"/items/{n}").status_code == 200
            for _ in range(SENT["POST /cart/items"]):
                assert client.post("/cart/items").status_code == 200
            for _ in range(SENT["GET /fail"]):
                assert client.get("/fail").status_code == 503
            for n in range(SENT[LONG]):
                assert client.get(f"/users/{n}/orders/1/items/2/history").status_code == 200
        time.sleep(2.5)
    # logrotate's compress: the older backups as .gz next to the plain ones.
    for path in sorted(logs.glob("*.[2-9]")):
        with open(path, "rb") as plain, gzip.open(f"{path}.gz", "wb") as packed:
            shutil.copyfileobj(plain, packed)
        path.unlink()
    return pids


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    return root / "logs", serve_twice(root, "log")


@pytest.fixture(scope="module")
def json_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("json")
    return root / "logs", serve_twice(root, "json")


def run_json(capsys, *argv: str) -> dict:
    assert main(["report", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.servers
@pytest.mark.parametrize("run", ["text_run", "json_run"])
def test_restarts_are_kept_apart_and_every_backup_read_once(request, run):
    logs, pids = request.getfixturevalue(run)
    assert list(logs.glob("monitoring.*.gz")) and list(logs.glob("monitoring.*.1"))
    stats = ReadStats()
    report = build_report(read_logs(logs, stats))
    assert stats.bad_lines == 0 and not stats.bad_files
    assert {name: report.names[name].count for name in SENT} == {
        name: 2 * count for name, count in SENT.items()}
    assert sorted(report.processes, key=pids.index) == pids
    per_process = sum(SENT.values())
    assert [report.processes[pid].records for pid in pids] == [per_process, per_process]
    first, second = (report.processes[pid] for pid in pids)
    assert first.last < second.first
    assert set(report.activity.series()) == set(pids)


def test_filters_by_process_time_and_route(capsys, text_run):
    logs, pids = text_run
    only_first = run_json(capsys, str(logs), "--pid", str(pids[0]))
    assert [p["pid"] for p in only_first["processes"]] == [pids[0]]
    assert {r["name"]: r["count"] for r in only_first["routes"]} == SENT
    restart = run_json(capsys, str(logs))["processes"][1]["first"]
    after = run_json(capsys, str(logs), "--since", restart)
    assert [p["pid"] for p in after["processes"]] == [pids[1]]
    before = run_json(capsys, str(logs), "--until", only_first["processes"][0]["last"])
    assert [p["pid"] for p in before["processes"]] == [pids[0]]
    items = run_json(capsys, str(logs), "--route", "GET /items*", "--route", "GET /fail")
    assert {r["name"]: r["count"] for r in items["routes"]} == {
        "GET /items/{item_id}": 60, "GET /fail": 8}
    assert items["filtered"] == items["records"] - 68


def _records(logs: Path) -> Dict[str, List[dict]]:
    """The JSON records of the monitoring files, by name, read with nothing of ours."""
    out: Dict[str, List[dict]] = defaultdict(list)
    for path in logs.iterdir():
        if path.name.startswith("monitoring."):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as lines:
                for line in lines:
                    record = json.loads(line)
                    out[record["name"]].append(record)
    return out


def test_json_and_csv_read_back_match_the_records(capsys, json_run):
    logs, pids = json_run
    truth = _records(logs)
    doc = run_json(capsys, str(logs))
    assert main(["report", str(logs), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    by_name = {r["name"]: r for r in doc["routes"]}
    assert [r["name"] for r in rows] == [r["name"] for r in doc["routes"]]
    for name in SENT:
        records, row, line = truth[name], by_name[name], next(r for r in rows if r["name"] == name)
        changes = [r["rss_change"] for r in records]
        durations = sorted(r["duration"] for r in records)
        assert row["count"] == len(records) == int(line["count"])
        assert row["errors"] == sum(r["status"] == "ERROR" for r in records) == int(line["errors"])
        assert row["duration_max"] == durations[-1] == float(line["duration_max"])
        assert row["duration_p50"] == durations[math.ceil(len(durations) / 2) - 1]
        assert row["rss_change_mean"] == pytest.approx(sum(changes) / len(changes))
        assert float(line["rss_change_max"]) == max(changes)
    totals = [r["duration_total"] for r in doc["routes"]]
    assert totals == sorted(totals, reverse=True)
    assert [p["pid"] for p in doc["processes"]] == pids


@pytest.mark.parametrize("width", [80, 200])
def test_terminal_table_fits_and_wraps_names(capsys, text_run, width):
    logs, _ = text_run
    assert main(["report", str(logs), "--width", str(width)]) == 0
    out = capsys.readouterr().out
    assert all(len(line) <= width for line in out.splitlines())
    # No column is cut off at the right edge.
    assert all(line.endswith(("│", "┃", "┓", "┩", "┘")) for line in out.splitlines()
               if line.startswith(("│", "┃", "┏", "┡", "└")))
    table = out.split("Processes")[0]
    # Every character of the long name is there, in the Name column's wrapped lines (a wrap
    # at a space drops the space).
    names = "".join(line.split("│")[1].strip() for line in table.splitlines()
                    if line.startswith("│"))
    assert LONG.replace(" ", "") in names.replace(" ", "")
    if width == 200:
        assert LONG in table
    # Tracing was off and no leak was reported: those columns are left out.
    assert "Traced" not in table and "Leak" not in table and "Errors" in table
    assert not re.search(r"\d\.\d\dB\b|\+0B|\+0\.00", table)
    assert re.search(r"Processes", out)


# What the browser laid out: per chart its width, its shapes with a size (hover targets left
# out) and its series' pids; and the page's width.
MEASURE = """<script>
document.body.dataset.charts = [...document.querySelectorAll("svg.chart")].map(svg => {
  const box = svg.getBoundingClientRect();
  const shapes = [...svg.querySelectorAll("polyline, rect, circle, line")]
    .filter(s => !s.classList.contains("hit") && s.getBBox().width + s.getBBox().height > 0);
  const pids = [...svg.querySelectorAll("[data-pid]")].map(g => g.dataset.pid).join(",");
  return `${svg.dataset.chart}:${Math.round(box.width)}:${shapes.length}:${pids || "-"}`;
}).join(" ") + " page:" + document.body.clientWidth;
</script>"""


def _in_chromium(tmp_path: Path, logs: Path, script: str, attribute: str, *argv: str) -> str:
    """Write the report page of ``logs``, add ``script`` (which leaves its findings in the
    ``attribute`` of an element) and return that attribute from headless Chromium's DOM."""
    page = tmp_path / "report.html"
    assert main(["report", str(logs), "--html", str(page), *argv]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.count("<script>") == 1 and not re.search(r"(src|href)\s*=", text, re.I)
    page.write_text(text.replace("</body>", script + "</body>"), encoding="utf-8")
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--window-size=1400,1000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=90).stdout
    found = re.search(attribute + r'="([^"]*)"', dom)
    assert found is not None, dom[-2000:]
    return html.unescape(found.group(1))


def _laid_out(tmp_path: Path, logs: Path, *argv: str) -> Dict[str, tuple]:
    *charts, page_width = _in_chromium(tmp_path, logs, MEASURE, "data-charts", *argv).split()
    width = int(page_width.split(":")[1])
    out = {}
    for chart in charts:
        name, drawn, shapes, pids = chart.split(":")
        out[name] = (int(drawn), int(shapes), [] if pids == "-" else pids.split(","))
        assert int(drawn) >= width - 2 and int(shapes) > 0, chart
    return out


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_html_page_in_headless_chromium(tmp_path, capsys, text_run):
    logs, pids = text_run
    charts = _laid_out(tmp_path, logs)
    assert set(charts) == {"rss", "rate", "memory-dist", "duration-dist"}
    assert charts["rss"][2] == [str(pid) for pid in pids]
    # A filter changes what is drawn: one process, one series.
    charts = _laid_out(tmp_path, logs, "--pid", str(pids[1]))
    assert charts["rss"][2] == [str(pids[1])]
    capsys.readouterr()


# The memory guard's lines, in the formats agreed with the guard (written here by hand).
GUARD = ("MEMORY BUDGET | POST /cart/items | +182.40MB > 50.00MB | RSS change",
         "MEMORY LIMIT | crossed | RSS 812.00MB > 800.00MB | action: log | grew most: "
         "POST /cart/items +120.00MB (12 requests)",
         "MEMORY LIMIT | back under | RSS 700.00MB < 800.00MB")
# In the browser: the pointer over a point of the RSS chart (the tip's text and
# the point's title), and the event marks' kinds and sizes.
PROBE = """<script>
const hover = ["rss"].map(name => {
  const svg = document.querySelector(`svg[data-chart='${name}']`);
  // A point of its own: lines of one second with the same figure are drawn on one spot,
  // where the tip shows one of them.
  const all = [...svg.querySelectorAll("circle.hit")];
  const centre = h => { const r = h.getBoundingClientRect();
                        return [r.left + r.width / 2, r.top + r.height / 2]; };
  const alone = all.filter(h => { const [x, y] = centre(h);
    return all.every(o => o === h || Math.hypot(centre(o)[0] - x, centre(o)[1] - y) > 2); });
  const hits = alone.length ? alone : all;
  const hit = hits[Math.floor(hits.length / 2)];
  const b = hit.getBoundingClientRect();
  svg.dispatchEvent(new PointerEvent("pointermove", {bubbles: true,
    clientX: b.left + b.width / 2, clientY: b.top + b.height / 2}));
  const tip = document.querySelector(".tip");
  return [name, tip.hidden ? "" : tip.textContent, hit.querySelector("title").textContent];
});
const chart = document.querySelector("svg[data-chart='rss']").getBoundingClientRect();
const marks = [...document.querySelectorAll("svg[data-chart='rss'] line.event")].map(l => {
  const b = l.getBoundingClientRect();
  return [l.dataset.kind, b.height, b.left >= chart.left && b.right <= chart.right];
});
document.body.dataset.probe = JSON.stringify({hover, marks});
</script>"""


def _with_guard_lines(logs: Path, into: Path) -> None:
    """A copy of ``logs`` with the guard's lines after the last MEMORY line of the second
    process, with that line's time, pid and request id."""
    shutil.copytree(logs, into)
    current = into / "monitoring.log"
    lines = current.read_text(encoding="utf-8").splitlines()
    last = max(i for i, line in enumerate(lines) if " - INFO - MEMORY | " in line)
    prefix = lines[last].split(" - INFO - ")[0]
    guard = [f"{prefix} - {'WARNING' if 'under' not in g else 'INFO'} - {g}" for g in GUARD]
    current.write_text("\n".join(lines[:last + 1] + guard + lines[last + 1:]) + "\n",
                       encoding="utf-8")


def test_guard_lines_are_events_on_the_timeline(tmp_path, text_run):
    logs, pids = text_run
    _with_guard_lines(logs, tmp_path / "logs")
    stats = ReadStats()
    report = build_report(read_logs(tmp_path / "logs", stats))
    assert stats.bad_lines == 0
    events = {(e[1], e[4].get("state")): e for e in report.events}
    budget = events[("memory_budget", None)]
    assert budget[2] == "POST /cart/items" and budget[3] == pids[1]
    assert budget[4]["measured_bytes"] == 182.40 * 2**20 and budget[4]["measure"] == "rss_change"
    crossed = events[("rss_limit", "crossed")]
    assert crossed[4]["rss_bytes"] == 812 * 2**20 and crossed[4]["limit_bytes"] == 800 * 2**20
    assert crossed[4]["action"] == "log" and ("rss_limit", "back_under") in events
    # The guard's lines are not requests: the routes' counts are the requests sent.
    assert report.names["POST /cart/items"].count == 2 * SENT["POST /cart/items"]


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_hover_shows_values_and_events_are_drawn_in_headless_chromium(tmp_path, text_run):
    logs, _ = text_run
    _with_guard_lines(logs, tmp_path / "logs")
    probe = json.loads(_in_chromium(tmp_path, tmp_path / "logs", PROBE, "data-probe"))
    for name, tip, title in probe["hover"]:
        # The tip shows the value of the point under the pointer: its title, a size in it.
        assert tip == title and re.search(r"\d(\.\d+)?(B|KB|MB)\b", tip), (name, tip)
    kinds = {kind for kind, height, inside in probe["marks"] if height > 0 and inside}
    assert kinds == {"memory_budget", "rss_limit"}
