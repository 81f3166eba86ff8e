"""docs/performance.md is rendered from benchmarks/templates/ and the figures the benchmarks
return: each benchmark module has its template, and no figure or placeholder is dropped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import page

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_module_has_its_section_template_and_no_template_is_orphaned():
    modules = {p.stem for p in (ROOT / "benchmarks").glob("bench_*.py")}
    templates = {p.stem for p in page.TEMPLATES.glob("bench_*.md")}
    assert modules and modules == templates


def test_a_section_is_its_template_with_the_figures_filled_in(tmp_path):
    (tmp_path / "bench_x.md").write_text("## X\n\n$rows\n\nat most ${ratio}x\n")
    assert page.section("bench_x", {"rows": "| a |", "ratio": "3"}, tmp_path) == (
        "## X\n\n| a |\n\nat most 3x\n")


def test_a_missing_or_unused_figure_is_refused(tmp_path):
    (tmp_path / "bench_x.md").write_text("$rows and $ratio\n")
    with pytest.raises(ValueError, match=r"no figure for \['ratio'\]"):
        page.section("bench_x", {"rows": "1"}, tmp_path)
    with pytest.raises(ValueError, match=r"no placeholder for \['extra'\]"):
        page.section("bench_x", {"rows": "1", "ratio": "2", "extra": "3"}, tmp_path)


def test_the_page_is_the_header_then_the_sections():
    text = page.page("2 cores, test", ["## A\n", "## B\n"])
    assert text.startswith("# Performance\n")
    assert "Machine of this run: 2 cores, test.\n" in text
    assert text.index("## A") < text.index("## B")


@pytest.mark.servers
def test_each_section_runs_in_an_interpreter_of_its_own(tmp_path, monkeypatch):
    # The leak section once left a handler on MonitoringLogger, so the middleware section
    # after it measured the logging path instead of the direct one users get.
    from benchmarks.run_all import run_section

    (tmp_path / "section_that_changes_logging.py").write_text(
        "import logging, os\n"
        "def run(quick=False):\n"
        "    logger = logging.getLogger('MonitoringLogger')\n"
        "    logger.addHandler(logging.NullHandler())\n"
        "    logger.propagate = False\n"
        "    return {'pid': str(os.getpid()), 'quick': str(quick)}\n")
    (tmp_path / "section_after_it.py").write_text(
        "import logging, os\n"
        "def run(quick=False):\n"
        "    logger = logging.getLogger('MonitoringLogger')\n"
        "    return {'pid': str(os.getpid()), 'handlers': str(len(logger.handlers)),\n"
        "            'propagate': str(logger.propagate)}\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    first = run_section("section_that_changes_logging", quick=True)
    second = run_section("section_after_it")
    assert first["quick"] == "True"
    assert second["handlers"] == "0" and second["propagate"] == "True"
    assert len({first["pid"], second["pid"], str(os.getpid())}) == 3


@pytest.mark.servers
def test_the_middleware_bench_refuses_to_time_lines_handed_to_logging_as_its_own_files():
    # In a process of its own: pytest's log capture is a foreign handler on the root.
    script = (
        "import logging\n"
        "from benchmarks.bench_middleware import check_own_files\n"
        "from benchmarks.middleware_cases import cases\n"
        "check_own_files(cases())\n"
        "print('clean: direct')\n"
        "logging.getLogger('MonitoringLogger').addHandler(logging.NullHandler())\n"
        "try:\n"
        "    check_own_files(cases())\n"
        "except RuntimeError as exc:\n"
        "    print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "clean: direct"
    assert "handed to logging too" in done.stdout.splitlines()[1]


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("valgrind") is None,
                    reason="valgrind is not installed (CI installs it: .ci/run)")
def test_instructions_per_request_counts_what_a_middleware_adds():
    from benchmarks.instructions import instructions_per_request

    bare = instructions_per_request("bare", (10, 60))
    with_id = instructions_per_request("cid", (10, 60))
    assert bare is not None and with_id is not None
    # A Starlette request is tens of thousands of instructions; an id middleware adds more.
    assert 10_000 < bare < with_id < 10 * bare


def test_the_server_verdicts_give_the_median_and_the_range_of_the_rounds():
    from benchmarks.bench_server import verdicts

    def rows(ours, cid):
        return {"ours": {"ratio": ours}, "cid": {"ratio": cid}}

    scenarios = [
        rows([0.80, 0.90, 0.70], [0.82, 0.88, 0.90]),  # gaps -0.02, +0.02, -0.20
        rows([0.60, 0.70, 0.65], [0.90, 0.95, 0.92]),  # gaps all below -0.05
        rows([0.95, 0.85, 0.91], [0.99, 0.99, 0.99]),
    ]
    results = {(s, kind): row for s, scenario in enumerate(scenarios)
               for kind, row in scenario.items()}
    first, second, third = verdicts(results)
    assert first.endswith("median -0.02, range -0.20 to +0.02 (target: at least -0.05; met, "
                          "not in every round).")
    assert second.endswith("(target: at least -0.05; not met, in no round).")
    assert third.endswith("0.91 of bare, rounds 0.85 to 0.95 (target: at least 0.90; met, "
                          "not in every round).")


def test_the_in_process_verdicts_give_the_median_and_the_range_of_the_rounds():
    from benchmarks.bench_middleware import target_verdicts

    rows = {key: ("", figures) for key, figures in {
        "bare": [10.0, 10.0, 10.0],
        "cid": [15.0, 15.0, 15.0],  # adds 5 µs in every round
        "text": [20.0, 19.0, 21.0],  # 2.0x, 1.8x, 2.2x
        "default": [25.0, 26.0, 27.0],  # 3.0x, 3.2x, 3.4x
        "json": [22.0, 21.0, 23.0],  # 1.20, 1.22, 1.18 times what text adds
    }.items()}
    text, default, json_lines = target_verdicts(rows)
    assert text == ("- One text file adds 2.00x asgi-correlation-id's, rounds 1.80x to 2.20x "
                    "(target: at most 2.0x; met, not in every round).")
    assert default.endswith("rounds 3.00x to 3.40x (target: at most 2.5x; not met, in no round).")
    assert json_lines == ("- JSON lines add 1.20x what text lines add, rounds 1.18x to 1.22x "
                          "(target: at most 1.3x; met, in every round).")
