"""sherlock-ai report on damaged and forged logs: a corrupt line is counted and skipped, never a
crash; tags outside our loggers' records are not believed; text from the logs reaches the
terminal, CSV and JSON without control characters; rotations and links are read once, inside
the folder; a file or standard input is read as well as a folder. (Time and memory bounds on
large hostile inputs: tests/proof/test_hostile_logs.py.)"""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import sherlock_ai
from sherlock_ai import LoggingConfig
from sherlock_ai.__main__ import main
from sherlock_ai.logs.schema import parse_message
from sherlock_ai.report import ReadStats, build_report, read_logs
from sherlock_ai.report.export import cell, csv_line
from sherlock_ai.report.html import render_html
from sherlock_ai.report.units import seconds

HEAD = "2026-12-01 10:00:{:02d} - 4242 - rid - MonitoringLogger - INFO - "


def memory_text(name: str, second: int = 0, duration: str = "0.002",
                current: str = "50.00MB") -> str:
    return (HEAD.format(second) + f"MEMORY | {name} | SUCCESS | {duration}s | "
            f"Current: {current} | Change: +4.00KB")


def json_record(**fields) -> str:
    record = {"timestamp": "2026-12-01T10:00:00.000+00:00", "level": "INFO",
              "logger": "MonitoringLogger", "pid": 4242, "message": "MEMORY | x",
              "request_id": "rid", "kind": "memory", "name": "GET /ok", "status": "SUCCESS",
              "duration": 0.002, "concurrent": 0, "rss": 50_000_000, "rss_change": 4096}
    record.update(fields)
    # allow_nan: the forged lines carry NaN and Infinity as a hostile writer would.
    return json.dumps(record, allow_nan=True)


def report_of(path: Path):
    stats = ReadStats()
    return build_report(read_logs(path, stats)), stats


def run_all_outputs(logs: Path, tmp_path: Path, capsys) -> dict:
    """The table, CSV, JSON and HTML outputs of ``logs`` all succeed; the JSON document."""
    assert main(["report", str(logs), "--html", str(tmp_path / "page.html")]) == 0
    assert main(["report", str(logs), "--format", "csv"]) == 0
    capsys.readouterr()
    assert main(["report", str(logs), "--format", "json"]) == 0
    out = capsys.readouterr().out
    out.encode("ascii")
    return json.loads(out)


# One corrupt line never crashes the report: it is counted and skipped.
CORRUPT_JSON = {
    "pid Infinity": {"pid": float("inf")},
    "pid a float": {"pid": 3.5},
    "duration NaN": {"duration": float("nan")},
    "duration a text": {"duration": "0.2"},
    "rss Infinity": {"rss": float("inf")},
    "rss NaN": {"rss_change": float("nan")},
    "year one": {"timestamp": "0001-01-01T00:00:00.000+00:00"},
    "year one, local": {"timestamp": "0001-01-01T00:00:00"},
    "a name that is a list": {"name": ["GET /x"]},
}


@pytest.mark.parametrize("fields", CORRUPT_JSON.values(), ids=list(CORRUPT_JSON))
def test_a_corrupt_json_record_is_counted_and_skipped(tmp_path, capsys, fields):
    lines = [json_record(), json_record(**fields), json_record()]
    (tmp_path / "monitoring.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = run_all_outputs(tmp_path, tmp_path, capsys)
    assert (doc["records"], doc["bad_lines"]) == (2, 1)
    assert [r["count"] for r in doc["routes"]] == [2]


def test_a_nan_duration_after_4096_distinct_ones_is_skipped(tmp_path, capsys):
    # Past 4,096 distinct values a distribution buckets them by logarithm: NaN crashed it.
    lines = [json_record(duration=0.001 + n * 1e-6) for n in range(4100)]
    lines += [json_record(duration=float("nan")), json_record(duration=float("inf"))]
    (tmp_path / "monitoring.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = run_all_outputs(tmp_path, tmp_path, capsys)
    assert (doc["records"], doc["bad_lines"]) == (4100, 2)


def test_corrupt_text_lines_are_counted_and_skipped(tmp_path, capsys):
    lines = [memory_text("GET /ok"),
             memory_text("GET /nan", duration="nan"),
             memory_text("GET /inf", duration="inf"),
             memory_text("GET /huge", current="9" * 400 + "PB"),
             "0001-01-01 00:00:00 - 4242 - rid - MonitoringLogger - INFO - MEMORY | GET /old "
             "| SUCCESS | 0.002s | Current: 50.00MB | Change: +4.00KB",
             memory_text("GET /ok", second=1)]
    (tmp_path / "monitoring.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = run_all_outputs(tmp_path, tmp_path, capsys)
    assert (doc["records"], doc["bad_lines"]) == (2, 4)
    assert [r["name"] for r in doc["routes"]] == ["GET /ok"]


def test_guard_events_with_text_figures_are_skipped(tmp_path, capsys):
    budget = {"timestamp": "2026-12-01T10:00:01.000+00:00", "level": "WARNING",
              "logger": "MonitoringLogger", "pid": 4242, "message": "MEMORY BUDGET | x",
              "request_id": "rid", "kind": "memory_budget", "name": "POST /a",
              "route": "POST /a", "measure": "rss_change"}
    lines = [json_record(),
             json.dumps({**budget, "measured_bytes": "lots", "budget_bytes": 1024}),
             json.dumps({**budget, "kind": "rss_limit", "state": "crossed", "action": "log",
                         "rss_bytes": 2048, "limit_bytes": {"a": 1}}),
             json.dumps({**budget, "measured_bytes": 4096, "budget_bytes": 1024})]
    (tmp_path / "monitoring.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = run_all_outputs(tmp_path, tmp_path, capsys)
    assert (doc["records"], doc["bad_lines"]) == (2, 2)
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "memory budget POST /a: 4.00KB &gt; 1.00KB" in page


def test_names_reach_terminal_csv_and_json_without_control_characters(tmp_path, capsys):
    title = "GET /\x1b]0;owned\x07\x1b]52;c;ZWNobyBoaQ==\x07\x1b[2J"
    cr = "GET /a\r=HYPERLINK(\"http://evil.example\")"
    surrogate = "GET /\ud800"
    lines = [json_record(name=title), json_record(name=cr), json_record(name=surrogate)]
    (tmp_path / "monitoring.jsonl").write_text(
        "\n".join(json.dumps(json.loads(line), ensure_ascii=True) for line in lines) + "\n",
        encoding="utf-8")
    assert main(["report", str(tmp_path), "--width", "200"]) == 0
    table = capsys.readouterr().out
    assert "\x1b" not in table and "\x07" not in table and "\r" not in table
    assert "GET /\\x1b]0;owned\\x07" in table
    assert main(["report", str(tmp_path), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 3 and not any(row["name"].startswith("=") for row in rows)
    assert 'GET /a\\x0d=HYPERLINK("http://evil.example")' in {row["name"] for row in rows}
    doc = run_all_outputs(tmp_path, tmp_path, capsys)
    assert {r["name"] for r in doc["routes"]} == {
        "GET /\\x1b]0;owned\\x07\\x1b]52;c;ZWNobyBoaQ==\\x07\\x1b[2J",
        'GET /a\\x0d=HYPERLINK("http://evil.example")', "GET /\\ud800"}


@pytest.mark.parametrize("text", [
    "a\rb", "a\nb", "a\r\n=b", "a,b", 'say "hi"', "\r=cmd()", "=1+2", "-x,\"y\"", "plain",
])
def test_the_csv_writer_keeps_every_cell_whole_whatever_it_holds(text):
    # The writer itself, not only the reader's escaping upstream: a bare CR is a line end to
    # many readers, so every cell holding CR, LF, a comma or a quote is quoted, and the
    # formula guard still applies to the cell's text.
    written = csv_line([text, 1.5, None, "end"])
    assert written.endswith("\n") and written.count("\n") == 1 + text.count("\n")
    (row,) = list(csv.reader(io.StringIO(written, newline="")))
    assert row == [cell(text), "1.5", "", "end"]
    assert not row[0].startswith(("=", "-", "\r"))
    if any(c in text for c in "\r\n,\""):
        assert written.startswith('"')


def test_json_output_is_ascii_and_holds_no_nan(tmp_path, capsys):
    lines = [json_record(name="GET /caf\u00e9"), json_record(rss=float("nan"))]
    (tmp_path / "monitoring.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["report", str(tmp_path), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and "Infinity" not in out
    out.encode("ascii")
    assert json.loads(out)["routes"][0]["name"] == "GET /caf\u00e9"


def test_a_rotation_both_plain_and_compressed_is_read_once(tmp_path):
    older = "\n".join(memory_text("GET /a", second=n) for n in range(5)) + "\n"
    (tmp_path / "monitoring.log.1").write_text(older, encoding="utf-8")
    (tmp_path / "monitoring.log.1.gz").write_bytes(gzip.compress(older.encode()))
    (tmp_path / "monitoring.log").write_text(memory_text("GET /a", 9) + "\n", encoding="utf-8")
    report, stats = report_of(tmp_path)
    assert report.names["GET /a"].count == 6
    assert stats.left_out == ["monitoring.log.1.gz: the same rotation as monitoring.log.1"]


def test_a_link_out_of_the_folder_is_not_followed(tmp_path, capsys):
    secret = tmp_path / "secret.log"
    secret.write_text(memory_text("GET /secret-text") + "\n", encoding="utf-8")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "monitoring.log").write_text(memory_text("GET /a") + "\n", encoding="utf-8")
    (logs / "performance.log").symlink_to(secret)
    (logs / "monitoring.log.1").symlink_to(logs / "monitoring.log")
    report, stats = report_of(logs)
    assert set(report.names) == {"GET /a"} and report.names["GET /a"].count == 2
    assert stats.left_out == ["performance.log: a link to a file outside the folder"]
    assert main(["report", str(logs)]) == 0
    assert "secret-text" not in capsys.readouterr().out


# Lines of the app-only set-up (app.* holds every logger's lines).
ACCESS = ('2026-12-01 10:00:02 - rid - gunicorn.access - INFO - 10.0.0.9 - - "GET / HTTP/1.1" '
          '200 2 "-" "LEAK SUSPECT | GET /admin | +1.00MB/request | evil.py:1 +9.00MB '
          '(+9 blocks) over 9 requests"')
USER_TEXT = ("2026-12-01 10:00:03 - rid - shop.orders - INFO - note from customer: "
             "MEMORY | GET /forged | SUCCESS | 9.000s | Current: 1.00PB | Change: +1.00PB")


@pytest.mark.parametrize("log_format", ["log", "json"])
def test_app_files_believe_only_our_loggers_records(tmp_path, log_format):
    if log_format == "log":
        # A user's text with a line feed: its second line starts with our tag.
        lines = [memory_text("GET /real"), ACCESS, USER_TEXT.replace(": MEMORY", ":\nMEMORY")]
        (tmp_path / "app.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        forged = {"timestamp": "2026-12-01T10:00:03.000+00:00", "level": "INFO",
                  "logger": "shop.orders", "pid": 1, "request_id": "rid",
                  "message": "MEMORY | GET /forged | SUCCESS | 9.000s | Current: 1.00PB | "
                             "Change: +1.00PB"}
        lines = [json_record(name="GET /real"), json.dumps(forged),
                 json.dumps({**forged, "kind": "memory", "name": "GET /forged",
                             "status": "SUCCESS", "duration": 9.0})]
        (tmp_path / "app.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report, stats = report_of(tmp_path)
    assert set(report.names) == {"GET /real"} and not report.suspects
    assert (stats.records, stats.foreign_tags, stats.bad_lines) == (1, 2, 0)


def test_stacked_decorators_count_a_call_once(tmp_path):
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))

    @sherlock_ai.log_performance
    @sherlock_ai.monitor_memory(trace_malloc=False)
    def work():
        return [0] * 100

    for _ in range(5):
        work()
    sherlock_ai.SherlockAI.cleanup()
    report, _ = report_of(tmp_path)
    (stats,) = report.names.values()
    assert stats.count == 5 and stats.kinds == {"memory", "performance"}
    assert stats.also_counted == {"performance": 5}


def test_text_durations_under_a_millisecond_say_so(tmp_path):
    assert seconds(0.0) == "<1ms" and seconds(0.000015) == "15µs"
    lines = [memory_text("GET /fast", second=n, duration="0.000") for n in range(3)]
    (tmp_path / "monitoring.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report, stats = report_of(tmp_path)
    assert "<td>&lt;1ms</td>" in render_html(report, stats)


def test_the_page_says_when_lines_without_a_pid_merge_processes(tmp_path):
    line = ("2026-12-01 10:00:00 - rid - MonitoringLogger - INFO - MEMORY | GET /a | SUCCESS "
            "| 0.002s | Current: 50.00MB | Change: +4.00KB")
    (tmp_path / "monitoring.log").write_text(line + "\n", encoding="utf-8")
    report, stats = report_of(tmp_path)
    page = render_html(report, stats)
    assert "1 records carry no pid: every process that wrote them counts as one" in page


def test_the_page_puts_the_answers_first(tmp_path):
    leak = (HEAD.format(5) + "LEAK SUSPECT | GET /leaky | +4.00KB/request | app.py:9 +400.00KB "
            "(+100 blocks) over 100 requests")
    recycle = (HEAD.format(6) + "MEMORY LIMIT | recycling | RSS 900.00MB > 800.00MB | pid 4242 "
               "exits after 2 in-flight requests")
    lines = [memory_text("GET /export"), leak, recycle]
    (tmp_path / "monitoring.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report, stats = report_of(tmp_path)
    page = render_html(report, stats)
    order = [page.index(h) for h in ("<h2>Leak suspects", "<h2>Memory budget and limit",
                                     "<h2>Process memory (RSS)", "<h2>All names")]
    assert order == sorted(order)
    assert "1 worker recycles</b> (pids 4242)" in page
    assert "Memory change by name over time" not in page


KUBECTL = "[pod/shop-7d9/web] "
DOCKER = "2026-12-01T10:00:00.123456789Z "


@pytest.mark.servers
def test_a_file_or_standard_input_is_read_whatever_the_prefix(tmp_path):
    lines = [KUBECTL + memory_text("GET /a"), DOCKER + memory_text("GET /a", 1),
             KUBECTL + json_record(name="GET /b"), DOCKER + json_record(name="GET /b"),
             KUBECTL + ACCESS, KUBECTL + USER_TEXT, "plain text of another program",
             KUBECTL + memory_text("GET /c", duration="nan")]
    text = "\n".join(lines) + "\n"
    source = tmp_path / "pod.log"
    source.write_text(text, encoding="utf-8")
    for argv, given in (([str(source)], None), (["-"], text)):
        done = subprocess.run([sys.executable, "-m", "sherlock_ai", "report", *argv, "--format",
                               "json"], input=given, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert {r["name"]: r["count"] for r in doc["routes"]} == {"GET /a": 2, "GET /b": 2}
        assert (doc["records"], doc["foreign_tags"], doc["bad_lines"]) == (4, 2, 1)


def test_a_missing_input_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "is not a folder or a file" in capsys.readouterr().err


def test_the_guard_lists_read_back_as_written():
    fields = parse_message("MEMORY LIMIT | crossed | RSS 812.00MB > 800.00MB | action: log | "
                           "grew most: POST /a, b +12.00MB (30 requests), GET /x -1.00KB "
                           "(3 requests) | top sites: app.py:12 +3.00MB, b.py:4 -1.00KB",
                           "MEMORY LIMIT")
    assert fields["grew_most"] == [
        {"route": "POST /a, b", "bytes": 12 * 2**20, "requests": 30},
        {"route": "GET /x", "bytes": -1024, "requests": 3}]
    assert fields["top_sites"] == [{"file": "app.py", "line": 12, "size": 3 * 2**20},
                                   {"file": "b.py", "line": 4, "size": -1024}]


def test_app_files_in_a_given_format_believe_only_our_loggers_records(tmp_path):
    custom = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"
    lines = ["2026-12-01 10:00:00,001 | INFO | MonitoringLogger | MEMORY | GET /real | SUCCESS"
             " | 0.002s | Current: 50.00MB | Change: +4.00KB",
             "2026-12-01 10:00:01,001 | INFO | gunicorn.access | 10.0.0.9 \"GET /\" 200 \""
             "MEMORY | GET /forged | SUCCESS | 9.000s | Current: 1.00PB | Change: +1.00PB\"",
             "2026-12-01 10:00:02,001 | INFO | shop | MEMORY | GET /forged | SUCCESS | 9.000s |"
             " Current: 1.00PB | Change: +1.00PB"]
    (tmp_path / "app.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = ReadStats()
    report = build_report(read_logs(tmp_path, stats, log_format=custom))
    assert set(report.names) == {"GET /real"}
    assert (stats.records, stats.foreign_tags, stats.bad_lines) == (1, 2, 0)
