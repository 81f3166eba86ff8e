"""Every Python example in the README and the docs (integrations.md has its own test) runs
as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "docs/memory-monitoring.md", "docs/performance-monitoring.md",
        "docs/resource-monitoring.md", "docs/api-reference.md", "docs/leak-detection.md",
        "docs/metrics.md", "docs/report.md", "docs/memory-guard.md", "docs/celery.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def examples():
    for doc in DOCS:
        path = ROOT / doc
        if not path.exists():
            continue
        for number, code in enumerate(BLOCK.findall(path.read_text(encoding="utf-8")), 1):
            yield pytest.param(code, id=f"{doc}#{number}")


@pytest.mark.parametrize("code", list(examples()))
def test_example_runs(code, tmp_path):
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
