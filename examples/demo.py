"""``make demo``: the FastAPI example under a real uvicorn, a few hundred real HTTP requests,
then the log lines they left, each with its request id, the leak that leak detection found,
and the report of the logs (``sherlock-ai report``, with its HTML page).

    python examples/demo.py [--logs-dir demo-logs]

Steps run in order from ``STEPS``; a new scenario is one more ``@step`` function (and, if it
needs one, one more endpoint in ``fastapi_app.py``). Uses only the standard library on the
client side, so it needs nothing but the installed project.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

EXAMPLE_APP = Path(__file__).resolve().with_name("fastapi_app.py")


@dataclass
class Reply:
    """What one request got back."""

    path: str
    status: int
    request_id: str
    size: int


@dataclass
class Demo:
    """The running server and what the steps learned (later steps and the log view read it)."""

    base_url: str
    logs_dir: Path
    replies: Dict[str, List[Reply]] = field(default_factory=dict)

    def request(self, path: str, *, method: str = "GET",
                request_id: Optional[str] = None) -> Reply:
        """One real HTTP request; HTTP errors are answers too, not exceptions."""
        headers = {"X-Request-ID": request_id} if request_id else {}
        req = urllib.request.Request(self.base_url + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                body = response.read()
                status, echoed = response.status, response.headers.get("X-Request-ID", "")
        except urllib.error.HTTPError as error:
            body, status = error.read(), error.code
            echoed = error.headers.get("X-Request-ID", "")
        return Reply(path, status, echoed, len(body))

    def many(self, paths: List[str], *, concurrency: int = 1, method: str = "GET") -> List[Reply]:
        """Send ``paths``, ``concurrency`` at a time."""
        if concurrency == 1:
            return [self.request(p, method=method) for p in paths]
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(lambda p: self.request(p, method=method), paths))


Step = Callable[[Demo], List[Reply]]
STEPS: List[Step] = []


def step(func: Step) -> Step:
    """Register a scenario; its docstring's first line is its title."""
    STEPS.append(func)
    return func


@step
def browse_items(demo: Demo) -> List[Reply]:
    """Browse 150 items, one request after another"""
    return demo.many([f"/items/{n}" for n in range(150)])


@step
def leaking_cart(demo: Demo) -> List[Reply]:
    """Shop at 8 at a time: 450 item views and 150 cart additions (each cart leaks 4 KB)"""
    paths = [("POST", "/cart/items") if n % 4 == 0 else ("GET", f"/items/{n}")
             for n in range(600)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda p: demo.request(p[1], method=p[0]), paths))


@step
def concurrent_burst(demo: Demo) -> List[Reply]:
    """A burst of 120 item requests, 16 at a time"""
    return demo.many([f"/items/{n}" for n in range(1000, 1120)], concurrency=16)


@step
def place_orders(demo: Demo) -> List[Reply]:
    """Place 20 orders (each queues a background task)"""
    return demo.many(["/orders"] * 20, method="POST", concurrency=4)


@step
def build_reports(demo: Demo) -> List[Reply]:
    """Build 5 reports in FastAPI's threadpool (a @monitor_memory endpoint)"""
    return demo.many(["/report"] * 5)


@step
def failing_checkout(demo: Demo) -> List[Reply]:
    """Check out 5 times: the endpoint raises, the client gets a 500 with its id"""
    return demo.many(["/checkout"] * 5)


@step
def streaming_export(demo: Demo) -> List[Reply]:
    """Stream 3 CSV exports (measured until their last chunk)"""
    return demo.many(["/export"] * 3)


@step
def hostile_ids(demo: Demo) -> List[Reply]:
    """Send 2 forged ids (replaced, never echoed or logged) and 1 valid id of our own"""
    return [demo.request("/items/1", request_id="abc\tMEMORY | forged"),
            demo.request("/items/2", request_id="<script>alert(1)</script>"),
            demo.request("/items/3", request_id="my-own-id-42")]


@step
def health_checks(demo: Demo) -> List[Reply]:
    """Probe /health 5 times (excluded: an id, no measurement)"""
    return demo.many(["/health"] * 5)


def start_server(logs_dir: Path) -> Tuple[subprocess.Popen, str]:
    """Start the FastAPI example on a free port of 127.0.0.1 and wait until it answers."""
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE_APP), "--port", "0", "--logs-dir", str(logs_dir),
         "--no-console"],
        stdout=subprocess.PIPE, text=True,
    )
    first_line = proc.stdout.readline() if proc.stdout else ""
    if not first_line.startswith("serving on "):
        proc.kill()
        raise SystemExit(f"the example app did not start (said {first_line!r})")
    url = first_line.split()[-1]
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the example app did not start listening within 30 s")


def stop_server(proc: subprocess.Popen) -> None:
    """Graceful stop (uvicorn finishes its requests and flushes the logs)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def lines_with(path: Path, needle: str) -> List[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if needle in line]


def show_logs(demo: Demo) -> None:
    """Print a selection of the log lines and where the files are."""
    monitoring, app_log = demo.logs_dir / "monitoring.log", demo.logs_dir / "app.log"

    print("\nOne MEMORY line per request, named by route (first of each):")
    seen = set()
    for line in lines_with(monitoring, "MEMORY | "):
        route = line.split(" | ")[1]
        if route not in seen:
            seen.add(route)
            print("  " + line)

    order_id = demo.replies["place_orders"][0].request_id
    print(f"\nEverything request {order_id} logged (POST /orders; its background task too):")
    for line in lines_with(app_log, f" - {order_id} - "):
        print("  " + line)

    failed = demo.replies["failing_checkout"][0]
    print(f"\nThe failing checkout: the client got HTTP {failed.status} with id "
          f"{failed.request_id}, and the log says:")
    for line in lines_with(app_log, f" - {failed.request_id} - "):
        print("  " + line)
    print("  (uvicorn logs the traceback after the request has ended; its record still carries "
          "the request's id, which the middleware left on the exception. The traceback's "
          "frames are in errors.log and app.log)")

    print("\nLeak detection found the endpoint that keeps memory, and the line:")
    suspects = lines_with(monitoring, "LEAK SUSPECT | ")
    for line in suspects[-1:] or ["  (no suspect yet: more traffic is needed)"]:
        print("  " + line)

    print("\nForged ids were replaced:")
    for reply, sent in zip(demo.replies["hostile_ids"],
                           ["abc\tMEMORY | forged", "<script>alert(1)</script>", "my-own-id-42"]):
        print(f"  sent {json.dumps(sent)} -> echoed {reply.request_id}")

    print("\nLog files:")
    for path in sorted(demo.logs_dir.glob("*.log")):
        print(f"  {path.resolve()}  ({path.stat().st_size:,} bytes)")


def run_steps(demo: Demo) -> None:
    for func in STEPS:
        replies = func(demo)
        demo.replies[func.__name__] = replies
        statuses = sorted({r.status for r in replies})
        title = (func.__doc__ or func.__name__).strip().splitlines()[0]
        print(f"  {title}: {len(replies)} requests, status {', '.join(map(str, statuses))}")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="sherlock_ai demo: real server, real logs")
    parser.add_argument("--logs-dir", default="demo-logs")
    args = parser.parse_args(argv)
    logs_dir = Path(args.logs_dir)
    logs_dir.mkdir(parents=True, exist_ok=True)
    for old in logs_dir.glob("*.log*"):
        old.unlink()

    proc, url = start_server(logs_dir)
    print(f"FastAPI example running under uvicorn at {url}, logging into {logs_dir}/")
    demo = Demo(url, logs_dir)
    try:
        run_steps(demo)
    finally:
        stop_server(proc)
    total = sum(len(r) for r in demo.replies.values())
    print(f"Server stopped after {total} requests.")
    show_logs(demo)
    page = logs_dir / "report.html"
    print(f"\nThe report of those logs (sherlock-ai report {logs_dir} --html {page}):")
    from sherlock_ai.__main__ import main as sherlock_ai_command

    sherlock_ai_command(["report", str(logs_dir), "--html", str(page)])


if __name__ == "__main__":
    main()
