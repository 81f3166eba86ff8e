"""The memory guard (``make demo`` runs it after demo.py): a Flask shop under gunicorn with two
sync workers, a route whose requests go over their memory budget, and a report cache that
never empties, so each worker crosses its RSS limit and is recycled while every request still
gets its 200.

    python examples/guard_demo.py [--logs-dir demo-logs/guard]

Imported by gunicorn (``guard_demo:app``) it is the app; run as a script it starts gunicorn,
sends the requests and prints the lines the guard wrote.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
BUDGET = "20MB"
GROWTH_MB = 8  # kept by each /reports request
LIMIT_ABOVE_START_MB = 48


def create_app():  # -> Flask
    """The shop: ``POST /export`` builds 40 MB and frees it (over its 20 MB budget), ``GET
    /reports`` keeps 8 MB in a cache that never empties; the workers are recycled 48 MB above
    the RSS they started with."""
    from flask import Flask

    from sherlock_ai.engine.rss import current_rss
    from sherlock_ai.integrations.flask import Sherlock

    logs = Path(os.environ.get("GUARD_DEMO_LOGS", "demo-logs/guard"))
    handler = logging.FileHandler(logs / "monitoring.log")
    handler.setFormatter(logging.Formatter(
        "%(asctime)s - pid %(process)d - %(request_id)s - %(levelname)s - %(message)s"))
    monitoring = logging.getLogger("MonitoringLogger")
    monitoring.addHandler(handler)
    monitoring.setLevel(logging.INFO)

    app = Flask("guard_demo")
    cache: List[bytes] = []

    @app.post("/export")
    def export() -> str:
        rows = b"x" * (40 << 20)  # one 40 MB buffer, held until the response is built
        return str(len(rows))

    @app.get("/reports")
    def reports() -> str:
        cache.append(os.urandom(GROWTH_MB << 20))  # the cache that never empties
        return str(os.getpid())

    @app.get("/health")
    def health() -> str:
        return "ok"

    # trace_malloc: the budget is then compared with each request's traced peak, which sees
    # the 40 MB the export frees before it ends (its RSS change would not).
    Sherlock(app, exclude_paths=["/health"], memory_budget={"POST /export": BUDGET},
             trace_malloc=True, rss_limit=current_rss() + (LIMIT_ABOVE_START_MB << 20),
             on_rss_limit="recycle")
    return app


def request(url: str, method: str = "GET") -> tuple:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as r:
        return r.status, r.read().decode()


def start(logs: Path) -> tuple:
    env = {**os.environ, "GUARD_DEMO_LOGS": str(logs.resolve())}
    with open(logs / "gunicorn.log", "wb") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:0", "--chdir",
             str(HERE), "guard_demo:create_app()"], env=env, stdout=err, stderr=err)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)",
                          (logs / "gunicorn.log").read_text())
        if found:
            return proc, found.group(1)
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("gunicorn did not start within 30 s")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="sherlock_ai memory guard demo")
    parser.add_argument("--logs-dir", default="demo-logs/guard")
    logs = Path(parser.parse_args(argv).logs_dir)
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    proc, url = start(logs)
    print(f"\nMemory guard: a Flask shop under gunicorn, 2 sync workers, at {url}")
    try:
        exports = [request(url + "/export", "POST")[0] for _ in range(2)]
        print(f"  2 exports of 40 MB each (budget {BUDGET}): status {sorted(set(exports))}")
        replies = [request(url + "/reports") for _ in range(24)]
        pids = [int(body) for _, body in replies]
        print(f"  24 reports, each keeping {GROWTH_MB} MB: status "
              f"{sorted({status for status, _ in replies})}, served by workers "
              f"{', '.join(map(str, dict.fromkeys(pids)))}")
        print(f"  /health: {request(url + '/health')[0]}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    lines = (logs / "monitoring.log").read_text().splitlines()
    print("\nThe guard's lines (a budget warning per export, a line per recycled worker):")
    for line in lines:
        if "MEMORY BUDGET |" in line or "MEMORY LIMIT |" in line:
            print("  " + line)
    print(f"\nLog files: {(logs / 'monitoring.log').resolve()}, "
          f"{(logs / 'gunicorn.log').resolve()}")


if __name__ == "__main__":
    main()
