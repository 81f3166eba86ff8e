"""Machine instructions one in-process request executes, counted by valgrind's cachegrind:
a figure that machine load does not move, like the bytecode count, that also counts the C
code (the interpreter, the standard library's C functions, system call wrappers). Work in the
kernel is not in it.

:func:`instructions_per_request` runs this module twice under cachegrind, with two numbers of
requests, and divides the difference of the two counts by the difference of the numbers: what
the process does once (start, imports, set-up, the first requests' warm-up) cancels out.

    python -m benchmarks.instructions CASE N    (what runs under valgrind)
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
_COUNT = re.compile(r"I\s+refs:\s+([\d,]+)")


def available() -> bool:
    """Whether valgrind is installed (Debian: ``apt-get install valgrind``)."""
    return shutil.which("valgrind") is not None


def instructions_per_request(case: str, requests: Sequence[int] = (200, 1200),
                             path: str = "/items/1") -> Optional[float]:
    """Instructions of one request to ``case`` (a key of ``middleware_cases.cases()``), or
    ``None`` without valgrind."""
    if not available():
        return None
    counts = []
    for number in requests:
        done = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
             sys.executable, "-m", "benchmarks.instructions", case, str(number), path],
            cwd=ROOT, capture_output=True, text=True, timeout=900, check=True,
            # One hash seed for both runs: dict and set probing is the same work in each.
            env={**os.environ, "PYTHONHASHSEED": "0"})
        found = _COUNT.search(done.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count in valgrind's output: {done.stderr[-500:]}")
        counts.append(int(found.group(1).replace(",", "")))
    return (counts[1] - counts[0]) / (requests[1] - requests[0])


def _main(case: str, number: int, path: str) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import asgi_request_driver
    from benchmarks.middleware_cases import cases, reset, starlette_app

    set_up, wrap = cases()[case][1]
    drive = asgi_request_driver(wrap(starlette_app()), path)
    reset()
    set_up()

    async def run() -> None:
        for _ in range(number):
            await drive()

    asyncio.run(run())


if __name__ == "__main__":
    _main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
