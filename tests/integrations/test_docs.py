"""Every Python example in docs/integrations.md runs as written (as an imported module, so a
``if __name__ == "__main__":`` server start is skipped)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from web_support import ROOT

DOC = ROOT / "docs" / "integrations.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.mark.servers
@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{n}" for n in range(1, len(BLOCKS) + 1)])
def test_the_example_runs(code, tmp_path):
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    runner = "import runpy; runpy.run_path('example.py', run_name='docs_example')"
    result = subprocess.run([sys.executable, "-c", runner], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_doc_has_examples():
    assert len(BLOCKS) >= 5
