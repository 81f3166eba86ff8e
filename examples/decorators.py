"""The decorators and context managers without a web framework: a small batch job.

    python examples/decorators.py                  # logs in ./logs, lines on the console too
    python examples/decorators.py --logs-dir out   # logs somewhere else

Each step prints what sherlock_ai measured, read from the tracker's ``measurement`` or from
the log line it wrote. Nothing here needs FastAPI or Flask.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Dict, Iterator, List, Optional

import sherlock_ai
from sherlock_ai import (
    LoggingConfig,
    MemoryTracker,
    PerformanceTimer,
    ResourceMonitor,
    ResourceTracker,
    get_logger,
    log_performance,
    monitor_memory,
    monitor_resources,
    request_id_context,
)

log = get_logger("batch")

# Kept alive on purpose: the Traced figure of load_catalog counts what is still referenced.
CATALOG: Dict[int, str] = {}


@monitor_memory(trace_malloc=True)
def load_catalog(size: int) -> int:
    """Builds a catalog that stays in memory: Traced shows what the call left alive."""
    for i in range(size):
        CATALOG[i] = f"product {i:06d} " + "x" * 100
    return len(CATALOG)


@monitor_memory(trace_malloc=True, top_allocations=3)
def build_report(rows: int) -> int:
    """Allocates a large temporary list: Peak shows it, Traced does not (it is freed)."""
    lines = [f"{i},{CATALOG.get(i % 1000, '')}" for i in range(rows)]
    return sum(len(line) for line in lines)


@log_performance(include_args=True)
def price(product_id: int, quantity: int = 1) -> float:
    """A fast function timed with its arguments in the line."""
    return round(9.99 * quantity + product_id % 7, 2)


@monitor_memory(trace_malloc=False)
async def fetch_prices(count: int) -> List[float]:
    """An async function: the wrapper stays a coroutine function."""
    await asyncio.sleep(0.01)
    return [price(i) for i in range(count)]


@monitor_memory(trace_malloc=False)
def stream_rows(count: int) -> Iterator[str]:
    """A generator: measured from its first step until it is exhausted or closed."""
    for i in range(count):
        yield f"row {i}"


@monitor_resources(include_io=True)
def write_export(path: str, rows: int) -> int:
    """CPU, RSS, threads and this process's storage I/O for one call."""
    with open(path, "w", encoding="utf-8") as out:
        for row in stream_rows(rows):
            out.write(row + "\n")
    return rows


@monitor_memory(trace_malloc=False)
def failing_step() -> None:
    """A failure is logged as ERROR with its message, and the exception still reaches you."""
    raise ValueError("the supplier feed is empty")


def run(logs_dir: str, console: bool = True) -> None:
    """Run the batch job once, with logs in ``logs_dir``."""
    setup = sherlock_ai.sherlock_ai(LoggingConfig(logs_dir=logs_dir, console_enabled=console))
    with request_id_context() as batch_id:
        log.info("batch started")
        print(f"Batch {batch_id}: every log line below carries this id.")

        print(f"load_catalog kept {load_catalog(20_000)} products in memory.")
        print(f"build_report returned {build_report(50_000)} characters.")
        print(f"fetch_prices returned {len(asyncio.run(fetch_prices(5)))} prices.")
        export = f"{logs_dir}/export.csv"
        print(f"write_export wrote {write_export(export, 2_000)} rows to {export}.")
        try:
            failing_step()
        except ValueError as exc:
            print(f"failing_step raised {exc!r} to its caller, as without monitoring.")

        with MemoryTracker("deduplicate", trace_malloc=True) as tracker:
            unique = sorted(set(CATALOG.values()))
        m = tracker.measurement
        print(f"MemoryTracker 'deduplicate' measured {m.duration:.3f}s, traced peak "
              f"{ResourceMonitor.format_bytes(m.traced_peak or 0)} for {len(unique)} values.")

        with PerformanceTimer("checksum"):
            sum(hash(v) for v in unique)
        with ResourceTracker("compress", include_io=False):
            b"".join(v.encode() for v in unique)

        snapshot = ResourceMonitor.capture_memory()
        print(f"Process RSS now {ResourceMonitor.format_bytes(snapshot.current_size)}.")
        log.info("batch finished")
    print(f"Log files: {', '.join(str(p.resolve()) for p in setup.log_files.values())}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs-dir", default="logs", help="where the log files go")
    parser.add_argument("--no-console", action="store_true", help="log to files only")
    args = parser.parse_args(argv)
    run(args.logs_dir, console=not args.no_console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
