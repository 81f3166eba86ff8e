"""``sherlock-ai report`` on generated logs: time to read them and the reader's peak memory,
for 100,000 and 1,000,000 records, text and JSON lines, a gzip-compressed backup included.

Lines are made by the real writers (``memory_line``, ``JsonFormatter``) for 20 routes and 3
processes over a day. Each size is read in a fresh process, whose peak RSS is reported.

    python -m benchmarks.run_all --only bench_report
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

from benchmarks.common import table

ROUTES = [f"GET /api/v1/resource{i}/{{item_id}}" for i in range(19)] + ["POST /cart/items"]
SIZES = (100_000, 1_000_000)
QUICK_SIZES = (10_000,)
DAY = 86_400.0


def generate(folder: Path, records: int, fmt: str) -> None:
    """``records`` lines into monitoring.log(.jsonl), its first fifth as a .1.gz backup."""
    from sherlock_ai.engine.measurement import Measurement
    from sherlock_ai.logs.json_lines import JsonFormatter
    from sherlock_ai.logs.lines import memory_line
    from sherlock_ai.logs.render import TextFormatter
    from sherlock_ai.logs.setup import DEFAULT_DATE_FORMAT, DEFAULT_FORMAT

    rng = random.Random(7)
    formatter = JsonFormatter() if fmt == "json" else TextFormatter(DEFAULT_FORMAT,
                                                                    DEFAULT_DATE_FORMAT)
    ext = "jsonl" if fmt == "json" else "log"
    start = time.time() - DAY
    with gzip.open(folder / f"monitoring.{ext}.1.gz", "wt", encoding="utf-8") as backup, \
            open(folder / f"monitoring.{ext}", "w", encoding="utf-8") as current:
        rss = 60_000_000
        for n in range(records):
            name = ROUTES[n % len(ROUTES)]
            change = 4096 if name.startswith("POST") else rng.choice((0, 0, 0, 4096, -4096))
            rss += change
            m = Measurement("memory", name, "SUCCESS", rng.expovariate(200), logging.INFO,
                            rss=rss, rss_change=change)
            record = logging.LogRecord("MonitoringLogger", logging.INFO, "sherlock_ai", 0,
                                       memory_line(m), (), None)
            record.created = start + DAY * n / records
            record.process = 1000 + n * 3 // records
            record.request_id = f"{n:016x}"
            record.sherlock = m
            (backup if n < records // 5 else current).write(formatter.format(record) + "\n")


def read(folder: str) -> Tuple[float, float, int, int]:
    """Read the folder as the command does; wall and CPU seconds, records, peak RSS (bytes).
    CPU time is the figure to compare on a shared machine (wall time includes steal)."""
    from sherlock_ai.report import ReadStats, build_report, read_logs

    started, cpu = time.perf_counter(), time.process_time()
    stats = ReadStats()
    report = build_report(read_logs(Path(folder), stats))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert sum(s.count for s in report.names.values()) == stats.records
    return elapsed, cpu, stats.records, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_report.md)."""
    rows: List[Tuple[str, ...]] = []
    for fmt in ("log", "json"):
        for records in (QUICK_SIZES if quick else SIZES):
            with tempfile.TemporaryDirectory() as folder:
                generate(Path(folder), records, fmt)
                size = sum(p.stat().st_size for p in Path(folder).iterdir())
                out = subprocess.run(
                    [sys.executable, "-c", "import json, sys; from benchmarks.bench_report "
                     "import read; print(json.dumps(read(sys.argv[1])))", folder],
                    capture_output=True, text=True, check=True,
                    cwd=Path(__file__).resolve().parent.parent).stdout
            elapsed, cpu, count, peak = json.loads(out)
            rows.append(("text" if fmt == "log" else "JSON", f"{count:,}",
                         f"{size / 2**20:.0f} MB", f"{cpu:.1f} s", f"{elapsed:.1f} s",
                         f"{count / cpu / 1000:.0f}k", f"{peak / 2**20:.0f} MB"))
    return {"sizes": table(["lines", "records", "on disk", "CPU time", "wall time",
                            "records/s", "peak RSS"], rows)}


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
