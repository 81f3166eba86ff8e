"""docs/performance.md is rendered from benchmarks/templates/ and the figures the benchmarks
return: each benchmark module has its template, and no figure or placeholder is dropped."""

from __future__ import annotations

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
