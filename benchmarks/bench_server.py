"""Throughput under a real uvicorn, what users feel: one worker pinned to one core, ``wrk`` in a
separate process pinned to the other, keep-alive connections on 127.0.0.1. The bare app,
asgi-correlation-id and sherlock_ai (default set-up, one MEMORY line per request) run side by
side and are loaded in rotation, every case once per round; ratios to bare are taken per round,
then medians.

Needs ``wrk`` (Debian: ``apt-get install wrk``); without it the section says so and measures
nothing. ``taskset`` pins the processes when the machine has two cores or more.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks.common import table, verdict
from benchmarks.middleware_cases import log_lines
from benchmarks.server_app import KINDS

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"bare": "bare", "cid": "asgi-correlation-id", "ours": "sherlock_ai (default set-up)"}
SCENARIOS = (  # (label, path, concurrency)
    ("trivial (`return \"item 1\"`)", "/items/1", 16),
    ("trivial", "/items/1", 64),
    ("realistic (awaits 2 ms, 5 kB JSON)", "/realistic", 64),
)
DETAILS = """Targets of issue 12:

{verdicts}

MEMORY lines in the sherlock_ai server's `monitoring.log`: {lines}, for {responses} responses
counted by wrk, warm-ups included (wrk does not count the responses still in flight when a run
stops, so the lines may be a few more). Socket errors and non-2xx responses, all runs:
{errors}."""
REALISTIC_TARGET = 0.90  # ours / bare with the realistic handler at concurrency 64
TRIVIAL_MARGIN = 0.05  # ours within this of asgi-correlation-id's ratio to bare


def pinning() -> Tuple[List[str], List[str], str]:
    """Command prefixes for the server and the load generator, and what the page says."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return (["taskset", "-c", "0"], ["taskset", "-c", "1"],
                "server pinned to core 0, wrk to core 1")
    return [], [], "not pinned (taskset missing or one core)"


class Server:
    """One ``benchmarks.server_app`` process; stopped by :meth:`stop` (SIGTERM, then kill)."""

    def __init__(self, kind: str, folder: str, prefix: Sequence[str]) -> None:
        self.kind = kind
        self.logs = os.path.join(folder, kind)
        os.makedirs(self.logs)
        self.stderr_path = os.path.join(folder, f"{kind}.stderr")
        with open(self.stderr_path, "w") as stderr:  # a file: a full pipe would stall it
            self.process = subprocess.Popen(
                [*prefix, sys.executable, "-m", "benchmarks.server_app", kind, self.logs],
                stdout=subprocess.DEVNULL, stderr=stderr, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.port = self._wait_port()

    def _wait_port(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.stderr_path) as f:
                found = re.search(r"LISTENING (\d+)", f.read())
            if found:
                port = int(found.group(1))
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/items/1", timeout=1).read()
                    return port
                except OSError:
                    pass
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        with open(self.stderr_path) as f:
            raise RuntimeError(f"server {self.kind} did not start: {f.read()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wrk(prefix: Sequence[str], port: int, path: str, concurrency: int,
        seconds: int) -> Tuple[float, int, int]:
    """(requests per second, responses, errors) of one wrk run."""
    out = subprocess.run(
        [*prefix, "wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "5s",
         f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True,
        timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    if rps is None or done is None:
        raise RuntimeError(f"unexpected wrk output: {out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return float(rps.group(1)), int(done.group(1)), errors + int(non_2xx.group(1) if non_2xx
                                                                 else 0)


def measure(rounds: int, seconds: int) -> Dict[str, object]:
    """Per scenario and case: requests/s and ratio to bare per round; lines and responses."""
    server_pin, load_pin, pinned = pinning()
    results: Dict[Tuple[int, str], Dict[str, List[float]]] = {}
    responses = {kind: 0 for kind in KINDS}
    errors = 0
    with tempfile.TemporaryDirectory(prefix="sherlock-bench-") as folder:
        servers: List[Server] = []
        try:
            for kind in KINDS:
                servers.append(Server(kind, folder, server_pin))
            for s, (_, path, concurrency) in enumerate(SCENARIOS):
                for server in servers:  # warm-up: connections, caches, the first log file
                    responses[server.kind] += wrk(load_pin, server.port, path, concurrency,
                                                  1)[1]
                for r in range(rounds):
                    # Rotate who goes first, so no case always follows the same one.
                    order = servers[r % len(servers):] + servers[:r % len(servers)]
                    rps: Dict[str, float] = {}
                    for server in order:
                        rps[server.kind], done, failed = wrk(load_pin, server.port, path,
                                                             concurrency, seconds)
                        responses[server.kind] += done
                        errors += failed
                    for kind in KINDS:
                        row = results.setdefault((s, kind), {"rps": [], "ratio": []})
                        row["rps"].append(rps[kind])
                        row["ratio"].append(rps[kind] / rps["bare"])
        finally:
            for server in servers:
                server.stop()
        lines = log_lines(os.path.join(folder, "ours"))
    return {"results": results, "responses": responses, "errors": errors, "pinned": pinned,
            "lines": lines}


def verdicts(results: Dict[Tuple[int, str], Dict[str, List[float]]]) -> List[str]:
    """The issue's targets, one sentence each, with what was measured: medians over the rounds
    and, since one round's ratios can be far from the next's on a shared machine, their range.
    The trivial handler's target compares ours with asgi-correlation-id's ratio round by round
    (both loaded in the same round)."""
    out = []
    median = statistics.median
    for s, (label, _, concurrency) in enumerate(SCENARIOS):
        ours = results[(s, "ours")]["ratio"]
        if s < 2:
            cid = results[(s, "cid")]["ratio"]
            gaps = [a - b for a, b in zip(ours, cid)]
            held = verdict(median(gaps), gaps, lambda gap: gap >= -TRIVIAL_MARGIN)
            out.append(f"{label}, concurrency {concurrency}: {median(ours):.2f} of bare against "
                       f"asgi-correlation-id's {median(cid):.2f}; ours minus theirs, round by "
                       f"round: median {median(gaps):+.2f}, range {min(gaps):+.2f} to "
                       f"{max(gaps):+.2f} (target: at least -{TRIVIAL_MARGIN:.2f}; {held}).")
        else:
            held = verdict(median(ours), ours, lambda share: share >= REALISTIC_TARGET)
            out.append(f"{label}, concurrency {concurrency}: {median(ours):.2f} of bare, rounds "
                       f"{min(ours):.2f} to {max(ours):.2f} (target: at least "
                       f"{REALISTIC_TARGET:.2f}; {held}).")
    return out


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_server.md)."""
    # Short rounds, many: the cases compared in one round are loaded close together in time.
    rounds, seconds = (1, 1) if quick else (8, 3)
    figures = {"rounds": str(rounds), "seconds": str(seconds), "cores": str(os.cpu_count())}
    if shutil.which("wrk") is None:
        message = ("**Not measured in this run: `wrk` was not found** (Debian: `apt-get "
                   "install wrk`; then rerun `make bench`).")
        return {**figures, "pinned": "-", "throughput": message, "details": ""}
    out = measure(rounds, seconds)
    results = out["results"]  # type: ignore[assignment]
    body = []
    for s, (label, _, concurrency) in enumerate(SCENARIOS):
        for kind in KINDS:
            row = results[(s, kind)]  # type: ignore[index]
            body.append((label, concurrency, LABELS[kind], f"{statistics.median(row['rps']):,.0f}",
                         f"{statistics.median(row['ratio']):.2f}",
                         f"{min(row['ratio']):.2f} to {max(row['ratio']):.2f}"))
    return {
        **figures,
        "pinned": str(out["pinned"]),
        "throughput": table(["handler", "concurrency", "app", "requests / s", "÷ bare",
                             "÷ bare, range over rounds"], body),
        "details": DETAILS.format(
            verdicts="\n".join(f"- {line}" for line in verdicts(results)),  # type: ignore[arg-type]
            lines=f"{out['lines']:,}", responses=f"{out['responses']['ours']:,}",  # type: ignore[index]
            errors=out["errors"]),
    }


def _main(argv: Optional[Sequence[str]] = None) -> None:
    print(run(quick="--quick" in (argv or sys.argv)))


if __name__ == "__main__":
    _main()
