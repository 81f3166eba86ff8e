"""What a log line costs in sherlock_ai's rotating file, over the one ``os.write`` any durable
line needs: the handler's lock and checks, rotation shared between processes (one writer, two
writers of one file), and rotation itself when it happens often.

Each case writes the same encoded line through ``SafeRotatingFileHandler.write_bytes`` (what
the line writer calls); the cases run in turn in each round, in process CPU time (system time
included). Run: ``python -m benchmarks.bench_files``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from benchmarks.common import cpu_calls_rounds, table
from sherlock_ai.logs.files import SafeRotatingFileHandler

LINE = (b"2026-01-01 12:00:00 - 3f2a9c1e - MonitoringLogger - INFO - MEMORY"
        b" | GET /items/{item_id} | SUCCESS | 0.001s | Current: 48.21MB | Change: +0B\n")
NEVER = 1 << 40  # a max_bytes no run reaches: the shared rotation checked, never done


def cases(folder: Path) -> Tuple[List[Tuple[str, Callable[[], None]]], List[Callable[[], None]]]:
    """``(label, write two lines)`` per case, and what closes their files."""
    fd = os.open(folder / "plain.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    write, monotonic = os.write, time.monotonic

    def handler(name: str, max_bytes: int = NEVER, backups: int = 5) -> SafeRotatingFileHandler:
        return SafeRotatingFileHandler(folder / name, maxBytes=max_bytes, backupCount=backups)

    unrotated = handler("unrotated.log", 0, 0)
    alone = handler("alone.log")
    first, second = handler("shared.log"), handler("shared.log")
    often = handler("often.log", 100_000, 3)

    def plain() -> None:
        write(fd, LINE)
        write(fd, LINE)

    def one(h: SafeRotatingFileHandler) -> Callable[[], None]:
        def two_lines() -> None:
            h.write_bytes(LINE, monotonic())
            h.write_bytes(LINE, monotonic())
        return two_lines

    def taking_turns() -> None:  # each line follows the other writer's
        first.write_bytes(LINE, monotonic())
        second.write_bytes(LINE, monotonic())

    made = [
        ("`os.write` on an `O_APPEND` descriptor (the floor)", plain),
        ("the handler, no rotation (`backup_count=0`)", one(unrotated)),
        ("the handler, rotation shared, one writer", one(alone)),
        ("the handler, rotation shared, two writers taking turns", taking_turns),
        ("the handler, one writer, rotating every 100 kB", one(often)),
    ]
    return made, [lambda: os.close(fd), *(h.close for h in (unrotated, alone, first, second,
                                                            often))]


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_files.md)."""
    number, rounds = (500, 2) if quick else (10_000, 11)
    with tempfile.TemporaryDirectory(prefix="sherlock-bench-files-") as folder:
        made, closers = cases(Path(folder))
        try:
            per_round = cpu_calls_rounds([(write, number) for _, write in made], rounds)
        finally:
            for close in closers:
                close()
    floor = per_round[0]
    rows = []
    for (label, _), times in zip(made, per_round):
        added = [(t - f) / 2 for t, f in zip(times, floor)]
        rows.append((label, statistics.median(times) / 2,
                     "" if times is floor else f"{statistics.median(added):+.2f}"))
    return {
        "files": table(["Case", "µs per line", "added over the floor (µs)"], rows),
        "line_bytes": str(len(LINE)),
        "rounds": str(rounds),
        "lines": f"{2 * number:,}",
    }


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
