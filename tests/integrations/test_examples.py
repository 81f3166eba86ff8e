"""The examples run as they are: the demo end to end, the Flask app under its own server."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

import sherlock_ai
from web_support import ROOT, server

pytestmark = pytest.mark.servers


def test_the_demo_serves_real_requests_and_shows_their_log_lines(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"Server stopped after (\d{3}) requests", out)
    assert "Check out 5 times: the endpoint raises, the client gets a 500 with its id: " \
           "5 requests, status 500" in out
    failing_id = re.search(r"the client got HTTP 500 with id (\S+),", out).group(1)
    assert f" - {failing_id} - MonitoringLogger - ERROR - MEMORY | GET /checkout | ERROR" in out
    # The server's traceback record, logged after the request ended, carries its id, and the
    # note under it says so.
    assert f" - {failing_id} - uvicorn.error - ERROR - Exception in ASGI application" in out
    assert "its record still carries the request's id" in out and "shows '-'" not in out
    order_id = re.search(r"Everything request (\S+) logged", out).group(1)
    assert f" - {order_id} - shop - INFO - confirmation e-mail queued" in out
    assert "MEMORY | GET /export | SUCCESS" in out
    logs = tmp_path / "demo-logs"
    assert str((logs / "monitoring.log").resolve()) in out
    memory = [line for line in (logs / "monitoring.log").read_text().splitlines()
              if " - MEMORY | " in line]
    requests = int(re.search(r"Server stopped after (\d+) requests", out).group(1))
    health_checks, reports = 5, 5  # excluded; and measured twice (endpoint and decorator)
    assert not [line for line in memory if " | GET /health" in line]
    assert len(memory) == requests - health_checks + reports
    suspect = re.search(r"WARNING - LEAK SUSPECT \| POST /cart/items \| \+([\d.]+)KB/request \| "
                        r"fastapi_app\.py:(\d+) ", out)
    assert suspect and 3.0 <= float(suspect.group(1)) <= 5.0
    app_lines = (ROOT / "examples" / "fastapi_app.py").read_text().splitlines()
    assert "CARTS.append(" in app_lines[int(suspect.group(2)) - 1]
    assert re.search(r"│ POST /cart/items\s+│\s+150 │", out)  # the report's table
    assert "HTML report written to" in out and "POST /cart/items" in (
        logs / "report.html").read_text()
    assert "<script>" not in (logs / "app.log").read_text()
    assert "forged" not in (logs / "app.log").read_text()


def test_the_flask_example_serves_and_logs_with_ids(tmp_path):
    with server(str(ROOT / "examples" / "flask_app.py"), "--port", "0", "--no-console",
                cwd=tmp_path, port_pattern=r"serving on http://127\.0\.0\.1:(\d+)") as flask, \
            httpx.Client(base_url=flask.url) as client:
        item = client.get("/items/3", headers={"X-Request-ID": "flask-example-1"})
        failed = client.get("/checkout")
        exported = client.get("/export")
    assert item.json() == {"item_id": 3, "name": "item 3"}
    # The example keeps the default trust_incoming_id=False: the client's id is replaced.
    item_id = item.headers["X-Request-ID"]
    assert item_id != "flask-example-1" and sherlock_ai.is_valid_request_id(item_id)
    assert failed.status_code == 500 and exported.text.startswith("id,name\n0,item 0\n")
    memory = (tmp_path / "logs" / "monitoring.log").read_text()
    assert "flask-example-1" not in memory
    assert f" - {item_id} - MonitoringLogger - INFO - MEMORY | GET /items/<int:item_id> " \
           "| SUCCESS" in memory
    assert f" - {failed.headers['X-Request-ID']} - MonitoringLogger - ERROR - MEMORY | " \
           "GET /checkout | ERROR" in memory
    assert "Error: HTTP 500 (RuntimeError: payment provider unavailable)" in memory
    errors = (tmp_path / "logs" / "errors.log").read_text()
    assert f" - {failed.headers['X-Request-ID']} - shop - ERROR - Exception on /checkout" in errors
