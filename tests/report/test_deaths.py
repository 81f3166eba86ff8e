"""Worker deaths in the report beyond its table: on the HTML page's RSS timeline (a mark with
the pid, how it died and the requests in flight), in ``--format json`` and in the deaths' CSV
with the fields of the ``WORKER DIED`` JSON line; a single file reads the records of its own
folder, standard input says it has none. The death is a real process killed with SIGKILL."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from sherlock_ai.__main__ import main
from sherlock_ai.deaths.watch import look
from sherlock_ai.report.charts import color
from sherlock_ai.report.export import DEATH_FIELDS
from tests.deaths.test_deaths import ROOT, killed_child

from .test_runs import _in_chromium


@pytest.mark.servers
def test_a_death_is_on_the_timeline_and_in_json_and_csv(tmp_path, capsys):
    pid = killed_child(tmp_path)
    # The child's line as a format with %(process)d after the time writes it, so that its
    # process has a line of its own on the timeline.
    log = tmp_path / "monitoring.log"
    log.write_text(re.sub(r"^(\S+ \S+) - ", rf"\1 - {pid} - ", log.read_text(), flags=re.M))
    page = tmp_path / "page.html"
    assert main(["report", str(tmp_path), "--format", "json", "--html", str(page)]) == 0
    (death,) = json.loads(capsys.readouterr().out)["worker_deaths"]
    assert list(death) == list(DEATH_FIELDS)
    assert death["pid"] == pid and death["cause"] == "unknown" and death["signal"] is None
    assert death["told_by"] == "nobody" and death["found_dead"] is False
    (request,) = death["in_flight"]
    assert request["method"] == "POST" and request["name"] == "/upload"
    assert request["request_id"] == "held-1" and request["rss_change"] >= 30 << 20
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", death["died_by"])

    text = page.read_text()
    (mark,) = re.findall(r"<g class='death' data-died='(\d+)' data-cause='(\w+)'>"
                         r"<title>([^<]*)</title>", text)
    assert mark[:2] == (str(pid), "unknown")
    title = html.unescape(mark[2])
    assert title.startswith(f"WORKER DIED: pid {pid}, unknown, after its last sign of life")
    assert "in flight: POST /upload (id held-1, >=" in title
    # The mark sits inside the RSS chart, whose hover tip reads it like a point.
    chart = text[text.index("data-chart='rss'"):]
    assert chart.index("class='death'") < chart.index("</svg>")
    mark_svg = chart[chart.index("class='death'"):]
    assert "<circle class='hit'" in mark_svg
    # The cross is in the colour of its process's line (the only one drawn here).
    assert f"data-pid='{pid}'" in chart and "<path d='M" in mark_svg
    assert re.search(r"<path [^>]*stroke='" + re.escape(color(0)) + "'", mark_svg)

    page.unlink()
    assert main(["report", str(tmp_path), "--format", "deaths-csv", "--html", str(page)]) == 0
    assert "class='death'" in page.read_text()
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert list(row) == list(DEATH_FIELDS)
    assert row["pid"] == str(pid) and row["cause"] == "unknown" and row["signal"] == ""
    assert json.loads(row["in_flight"]) == death["in_flight"]


@pytest.mark.servers
def test_a_told_death_keeps_its_tellers_verdict_and_filters_apply(tmp_path, capsys):
    pid = killed_child(tmp_path)
    look(tmp_path / ".workers", {}, "the test")

    def deaths(*argv: str) -> list:
        assert main(["report", str(tmp_path), "--format", "json", *argv]) == 0
        return json.loads(capsys.readouterr().out)["worker_deaths"]

    (death,) = deaths()
    assert death["pid"] == pid and death["told_by"] == f"pid {os.getpid()}"
    assert death["found_dead"] is True
    # The filters keep a death as they keep records: by pid, time, and a route in flight.
    assert deaths("--pid", str(pid)) == [death]
    assert deaths("--pid", str(pid + 1)) == []
    assert deaths("--route", "POST /up*") == [death]
    assert deaths("--route", "GET /done") == []
    assert deaths("--until", "2000-01-01") == []


@pytest.mark.servers
def test_a_file_reads_its_folders_records_and_standard_input_says_it_has_none(tmp_path,
                                                                               capsys):
    pid = killed_child(tmp_path)
    assert main(["report", str(tmp_path / "monitoring.log"), "--format", "json"]) == 0
    (death,) = json.loads(capsys.readouterr().out)["worker_deaths"]
    assert death["pid"] == pid
    # Standard input: the records are not at hand; said on stderr, null in JSON.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "sherlock_ai", "report", "-", "--format",
                           "json"], input=(tmp_path / "monitoring.log").read_bytes(),
                          capture_output=True, env=env, timeout=60, check=True)
    assert json.loads(done.stdout)["worker_deaths"] is None
    assert b"worker deaths not read: standard input" in done.stderr


def test_no_death_is_an_empty_list_and_a_header(tmp_path, capsys):
    (tmp_path / "monitoring.log").write_text(
        "2026-12-01 10:00:00 - 4242 - rid - MonitoringLogger - INFO - MEMORY | f | SUCCESS | "
        "0.002s | Current: 1.00MB | Change: +0.00B\n")
    assert main(["report", str(tmp_path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["worker_deaths"] == []
    assert main(["report", str(tmp_path), "--format", "deaths-csv"]) == 0
    assert capsys.readouterr().out == ",".join(DEATH_FIELDS) + "\n"


# In the browser: the pointer on a death's cross (the tip's text and the death's title) and
# where its line is drawn.
DEATH_PROBE = """<script>
const svg = document.querySelector("svg[data-chart='rss']");
const chart = svg.getBoundingClientRect();
const death = svg.querySelector("g.death");
const hit = death.querySelector("circle.hit");
const b = hit.getBoundingClientRect();
svg.dispatchEvent(new PointerEvent("pointermove", {bubbles: true,
  clientX: b.left + b.width / 2, clientY: b.top + b.height / 2}));
const tip = document.querySelector(".tip");
const line = death.querySelector("line").getBoundingClientRect();
document.body.dataset.probe = JSON.stringify({
  tip: tip.hidden ? "" : tip.textContent, title: hit.querySelector("title").textContent,
  inside: line.left >= chart.left && line.right <= chart.right && line.height > 0});
</script>"""


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_hovering_a_death_on_the_timeline_in_headless_chromium(tmp_path):
    pid = killed_child(tmp_path / "logs")
    probe = json.loads(_in_chromium(tmp_path, tmp_path / "logs", DEATH_PROBE, "data-probe"))
    assert probe["inside"] and probe["tip"] == probe["title"]
    assert probe["tip"].startswith(f"WORKER DIED: pid {pid}, unknown, ")
    assert "POST /upload (id held-1, >=" in probe["tip"]
