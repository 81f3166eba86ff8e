"""What the wheel ships: the PEP 561 marker, so that users' type checkers read our hints."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_py_typed(tmp_path):
    # Built from a copy: setuptools writes build/ and egg-info next to the sources.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "sherlock_ai", source / "sherlock_ai",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--quiet",
         "--wheel-dir", str(tmp_path / "dist")],
        check=True, capture_output=True, timeout=240,
    )
    (wheel,) = (tmp_path / "dist").glob("sherlock_ai-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sherlock_ai/py.typed" in names
    assert "sherlock_ai/integrations/__init__.py" in names
