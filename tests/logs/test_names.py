"""Names built from a client's text cannot forge a line's fields: read back by the report,
the line says what was measured."""

from __future__ import annotations

import pytest

import sherlock_ai
from sherlock_ai import LoggingConfig, MemoryTracker, PerformanceTimer
from sherlock_ai.logs.lines import safe_name
from sherlock_ai.logs.schema import locate, parse_message
from sherlock_ai.report import ReadStats, read_logs

FORGED = "x | ERROR | 99.000s | Current: 1.00PB | Change: +1.00PB | Error: y"


def test_a_bar_in_a_name_is_escaped_like_a_control_character():
    assert safe_name("a | b|c") == "a \\x7c b\\x7cc"
    assert safe_name("line\nbreak") == "line\\x0abreak"
    assert "|" not in safe_name(FORGED)


@pytest.mark.parametrize("tracker", [MemoryTracker, PerformanceTimer])
def test_a_forged_tracker_name_reads_back_as_the_real_figures(tmp_path, tracker):
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))
    with tracker(f"import {FORGED}"):
        pass
    sherlock_ai.SherlockAI.cleanup()
    stats = ReadStats()
    (record,) = read_logs(tmp_path, stats)  # the report reads one file of app.log's twin
    assert stats.bad_lines == 0
    assert record.name == "import " + FORGED.replace("|", "\\x7c")
    assert record.status == "SUCCESS"
    assert record.duration < 1.0
    assert record.rss is None or record.rss < 2**40


def test_arguments_built_from_client_text_cannot_forge_an_error(tmp_path):
    sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=tmp_path, console_enabled=False))

    @sherlock_ai.log_performance(include_args=True)
    def lookup(text):
        return text

    lookup("a | Error: forged")
    sherlock_ai.SherlockAI.cleanup()
    line = (tmp_path / "performance.log").read_text()
    assert "Args: 'a \\x7c Error: forged'" in line
    at, tag = locate(line)
    fields = parse_message(line[at:].rstrip("\n"), tag)
    assert fields["status"] == "SUCCESS" and "error" not in fields
