"""The harness of `make peers`: the plugin injects sherlock_ai into apps a suite builds and
counts requests and MEMORY records; the runner reads pytest's exact test ids from junit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

PEERS = Path(__file__).resolve().parent.parent / "peers"

_spec = importlib.util.spec_from_file_location("peers_run", PEERS / "run.py")
assert _spec is not None and _spec.loader is not None
peers_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers_run)

SUITE = '''
import flask
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient


def test_flask_app_is_instrumented():
    app = flask.Flask("peer")

    @app.route("/items/<int:n>")
    def item(n):
        return str(n)

    client = app.test_client()
    for n in (1, 2):
        with client.get(f"/items/{n}") as response:
            assert response.data == str(n).encode()
            assert response.headers["X-Request-ID"]


def test_starlette_app_is_instrumented():
    app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("ok"))])
    response = TestClient(app).get("/")
    assert response.text == "ok"
    assert response.headers["x-request-id"]


def test_bare_asgi_app_is_wrapped():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    assert TestClient(app).get("/bare").headers["x-request-id"]


def test_internal_error_is_seen():
    from sherlock_ai import safety

    safety.report_internal_error("a test site", ValueError("boom"))


@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown")


def test_call_fails_then_teardown_errors(broken_teardown):
    assert False, "the call"


class TestOutcomes:
    @pytest.mark.parametrize("value", ["a b", 2])
    def test_param(self, value):
        assert value != 2

    @pytest.mark.skip(reason="skipped on purpose")
    def test_skipped(self):
        pass
'''


def _run_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "test_peer.py").write_text(textwrap.dedent(SUITE))
    junit = tmp_path / "out.xml"
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SHERLOCK_PEERS_")}
    variables.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
         "-p", "sherlock_peers", f"--junitxml={junit}", "-o", "junit_family=xunit1"],
        cwd=tmp_path, env=variables, capture_output=True, text=True, timeout=120,
    )


def test_plugin_counts_one_record_per_request_and_runner_reads_exact_ids(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    done = _run_suite(tmp_path, PYTHONPATH=str(PEERS), SHERLOCK_PEERS_MODE="plain",
                      SHERLOCK_PEERS_OUT=str(summary))
    assert "2 failed" in done.stdout, done.stdout + done.stderr

    data = json.loads(summary.read_text())
    assert data["requests"] == 4
    assert data["memory_records"] == 4
    for key in peers_run.MEMORY_PROBLEMS:
        assert data[key] == 0, key
    assert [(e["where"], e["error"], e["test"]) for e in data["internal_errors"]] == [
        ("a test site", "ValueError: boom", "tests/test_peer.py::test_internal_error_is_seen")]
    assert peers_run.memory_problems(data) == ["internal errors reported: 1"]

    found = peers_run.outcomes(tmp_path / "out.xml")
    assert {t: s for t, (s, _) in found.items()} == {
        "tests/test_peer.py::test_flask_app_is_instrumented": "passed",
        "tests/test_peer.py::test_starlette_app_is_instrumented": "passed",
        "tests/test_peer.py::test_bare_asgi_app_is_wrapped": "passed",
        "tests/test_peer.py::test_internal_error_is_seen": "passed",
        "tests/test_peer.py::TestOutcomes::test_param[a b]": "passed",
        "tests/test_peer.py::TestOutcomes::test_param[2]": "failed",
        "tests/test_peer.py::TestOutcomes::test_skipped": "skipped",
        "tests/test_peer.py::test_call_fails_then_teardown_errors": "failed",
    }
    # pytest writes the teardown error as a second entry: the call's message is the one kept.
    assert found["tests/test_peer.py::test_call_fails_then_teardown_errors"][1] == (
        "AssertionError: the call")
    assert found["tests/test_peer.py::TestOutcomes::test_param[2]"][1].startswith("assert 2 != 2")


def test_echo_off_mode_sends_no_header(tmp_path: Path) -> None:
    done = _run_suite(tmp_path, PYTHONPATH=str(PEERS), SHERLOCK_PEERS_MODE="plain",
                      SHERLOCK_PEERS_ECHO="0")
    # The three tests that look for the echoed header fail, and only they (and the ones failing
    # on purpose).
    found = peers_run.outcomes(tmp_path / "out.xml")
    assert sorted(t for t, (s, _) in found.items() if s == "failed") == [
        "tests/test_peer.py::TestOutcomes::test_param[2]",
        "tests/test_peer.py::test_bare_asgi_app_is_wrapped",
        "tests/test_peer.py::test_call_fails_then_teardown_errors",
        "tests/test_peer.py::test_flask_app_is_instrumented",
        "tests/test_peer.py::test_starlette_app_is_instrumented",
    ], done.stdout + done.stderr


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    done = _run_suite(tmp_path, PYTHONPATH=str(PEERS), SHERLOCK_PEERS_MODE="fast")
    assert done.returncode != 0
    assert "SHERLOCK_PEERS_MODE must be one of plain, leak_detection, trace_malloc" in (
        done.stdout + done.stderr)
