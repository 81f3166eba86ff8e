"""What the wheel ships: the PEP 561 marker, so that users' type checkers read our hints."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

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


@pytest.mark.parametrize("module, missing, extra", [
    ("sherlock_ai.integrations.flask", "flask", "flask"),
    ("sherlock_ai.exporters.prometheus", "prometheus_client", "prometheus"),
    ("sherlock_ai.exporters.opentelemetry", "opentelemetry", "otel"),
])
def test_a_missing_extra_names_the_extra_to_install(module, missing, extra):
    # None in sys.modules is how Python itself reports a package as not importable.
    code = f"import sys; sys.modules[{missing!r}] = None; import {module}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: "), done.stderr
    assert f'needs {missing}, which is not installed: pip install "sherlock-ai[{extra}]"' \
        in last, done.stderr
    # Each extra named is one pyproject.toml declares.
    assert f"\n{extra} = [" in (ROOT / "pyproject.toml").read_text()
