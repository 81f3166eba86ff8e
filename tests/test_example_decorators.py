"""examples/decorators.py runs as it is and its log lines say what it printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "decorators.py"


def test_the_decorators_example_runs_and_logs_every_kind_of_line(tmp_path):
    result = subprocess.run([sys.executable, str(EXAMPLE), "--no-console"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    batch_id = re.search(r"^Batch ([0-9a-f]{16}):", result.stdout, re.M).group(1)
    assert "failing_step raised ValueError('the supplier feed is empty')" in result.stdout
    lines = (tmp_path / "logs" / "app.log").read_text(encoding="utf-8").splitlines()
    records = [line for line in lines if not line.startswith("    at ")]
    assert records and all(f" - {batch_id} - " in line for line in records)
    names = [line.split(" | ")[1] for line in records if " | " in line]
    assert names == (
        ["__main__.load_catalog", "__main__.build_report"] + ["__main__.price"] * 5
        + ["__main__.fetch_prices", "__main__.stream_rows", "__main__.write_export",
           "__main__.failing_step", "deduplicate", "checksum", "compress"]
    )
    load = next(line for line in records if "load_catalog" in line)
    # 20,000 strings of ~120 bytes stay referenced by CATALOG.
    traced = re.search(r"Traced: ([\d.]+)MB", load)
    assert traced and float(traced.group(1)) > 2.0
    report = next(line for line in records if "build_report" in line)
    peak = float(re.search(r"Peak: ([\d.]+)MB", report).group(1))
    assert peak > 5.0, report  # the temporary list of 50,000 rows
    assert lines[lines.index(report) + 1].startswith(f"    at {EXAMPLE}:")
    assert "ERROR - MEMORY | __main__.failing_step | ERROR" in "\n".join(records)
    assert " | I/O: R:" in next(line for line in records if "write_export" in line)
    assert (tmp_path / "logs" / "export.csv").read_text().count("\n") == 2_000
