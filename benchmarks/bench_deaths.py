"""What the flight record of worker deaths costs: per request, the in-flight entry written and
freed (``FlightRecord.opened`` and ``closed``, stores into the mapping); the same
inside a whole in-process request through the ASGI middleware, recorder on and off in turn;
and the watcher's once-a-second work (heartbeat and a look at a folder of records), which
runs off the request path.

Process CPU time, cases interleaved in each round, medians over the rounds; the added cost is
the median of each round's difference. Run: ``python -m benchmarks.bench_deaths``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from time import time
from typing import Dict, List

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from benchmarks.common import cpu_asgi_us, cpu_calls_rounds, opcodes_per_request, table
from sherlock_ai.deaths import recorder
from sherlock_ai.deaths.record import FlightRecord
from sherlock_ai.deaths.recorder import process_ticks
from sherlock_ai.deaths.watch import look
from sherlock_ai.integrations.asgi import instrument_app
from sherlock_ai.request_id import request_id_var

TARGET_US = 1.0


def live_pids(count: int) -> List[int]:
    """Up to ``count`` pids of live processes other than this one."""
    mine = os.getpid()
    return [int(name) for name in os.listdir("/proc")
            if name.isdigit() and int(name) != mine][:count]


def run(quick: bool = False) -> Dict[str, str]:
    """The figures of the section (templates/bench_deaths.md)."""
    number, rounds, requests = (2_000, 3, 500) if quick else (50_000, 11, 5_000)
    with tempfile.TemporaryDirectory(prefix="sherlock-bench-deaths-") as folder:
        record = FlightRecord(Path(folder), os.getpid(), 1, "", -1, 0, 0)
        request_id = "0f3c2a9e41b84d7c9a1e5b2f6d8c4a10"
        request_id_var.set(request_id)

        def nothing() -> None:
            pass

        def entry() -> None:  # what the engine does for one request
            slot = record.opened("GET", "/items/42", 50 << 20, request_id)
            record.closed(slot)

        pair, empty = cpu_calls_rounds([(entry, number), (nothing, number)], rounds)
        added = [p - e for p, e in zip(pair, empty)]

        async def ok(request):  # type: ignore[no-untyped-def]
            return PlainTextResponse("ok")

        app = instrument_app(Starlette(routes=[Route("/items/42", ok)]))

        def on() -> None:
            recorder.current = record

        def off() -> None:
            recorder.current = None

        with_record, without = cpu_asgi_us([(app, on, off), (app, off, off)], "/items/42",
                                           requests, rounds)
        request_added = [w - o for w, o in zip(with_record, without)]
        opcodes = [opcodes_per_request(app, set_up, off, "/items/42") for set_up in (off, on)]
        others = live_pids(10)
        for pid in others:  # a folder of ten other records, all alive
            FlightRecord(Path(folder), pid, process_ticks(pid), "", -1, 0, 0)
        (watch_round,) = cpu_calls_rounds(
            [(lambda: (record.heartbeat(time(), 50 << 20, 0), look(Path(folder), {}, "bench")),
              max(number // 100, 20))], rounds)
        record.close()
    median_pair = statistics.median(added)
    median_request = statistics.median(request_added)
    return {
        "entry": table(["Case", "µs per request", "bytecodes per request"], [
            ("`opened` and `closed` alone (the entry written and freed)", median_pair,
             ""),
            ("a whole in-process Starlette request, recorder off", statistics.median(without),
             f"{opcodes[0]:.0f}"),
            ("the same, recorder on", statistics.median(with_record), f"{opcodes[1]:.0f}"),
            ("added by the recorder to the request (median of the rounds' differences)",
             f"{median_request:+.2f}", f"{opcodes[1] - opcodes[0]:+.0f}"),
        ]),
        "verdict": (f"target at most {TARGET_US:.1f} µs per request: "
                    f"{_verdict(added)} for the entry alone ({median_pair:.2f} µs, rounds "
                    f"{min(added):.2f} to {max(added):.2f}); {_verdict(request_added)} inside "
                    f"a whole request ({median_request:+.2f} µs, rounds "
                    f"{min(request_added):+.2f} to {max(request_added):+.2f})"),
        "watcher_us": f"{statistics.median(watch_round):.0f}",
        "others": str(len(others)),
        "rounds": str(rounds),
        "calls": f"{number:,}",
        "requests": f"{requests:,}",
    }


def _verdict(added: List[float]) -> str:
    return "met" if statistics.median(added) <= TARGET_US else "not met"


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
