"""The ``sherlock-ai`` command's own options."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import sherlock_ai

pytestmark = pytest.mark.servers


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sherlock_ai", *args], capture_output=True,
                          text=True, timeout=60)


def test_version_prints_the_packages_version():
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"sherlock-ai {sherlock_ai.__version__}"


def test_uvicorn_log_config_prints_the_config_as_json():
    from sherlock_ai.integrations.server_logs import uvicorn_log_config

    done = run("uvicorn-log-config")
    assert done.returncode == 0
    assert json.loads(done.stdout) == uvicorn_log_config()
