"""Helpers shared by the benchmarks: timing, ASGI driving and markdown tables."""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from typing import Any, Callable, Iterable, List, Sequence, Tuple


def per_call_us(func: Callable[[], Any], number: int = 20_000, repeat: int = 7) -> float:
    """Median over ``repeat`` rounds of the mean process CPU time of one call, in
    microseconds (see :func:`cpu_calls_us`)."""
    return cpu_calls_us([(func, number)], repeat)[0]


def asgi_request_driver(app: Any, path: str = "/", method: str = "GET") -> Callable[[], Any]:
    """A coroutine function that sends one in-process HTTP request to ``app`` (no network)."""
    body_message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict:
        return body_message

    async def send(message: dict) -> None:
        return None

    def scope() -> dict:
        return {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
        }

    async def one() -> None:
        await app(scope(), receive, send)

    return one


def asgi_per_request_us(app: Any, path: str = "/", number: int = 3_000, repeat: int = 5) -> float:
    """Median over ``repeat`` rounds of the mean process CPU time of one in-process request to
    ``app``, in microseconds (see :func:`cpu_asgi_us`)."""
    return statistics.median(cpu_asgi_us([(app, _nothing, _nothing)], path, number, repeat)[0])


def _nothing() -> None:
    pass


def cpu_calls_us(calls: Sequence[Tuple[Callable[[], Any], int]], rounds: int = 7) -> List[float]:
    """Median over ``rounds`` of the mean **process CPU time** of one call of each
    ``(func, number)``, in microseconds (see :func:`cpu_calls_rounds`)."""
    return [statistics.median(values) for values in cpu_calls_rounds(calls, rounds)]


def cpu_calls_rounds(calls: Sequence[Tuple[Callable[[], Any], int]],
                     rounds: int = 7) -> List[List[float]]:
    """Per ``(func, number)``, the mean **process CPU time** of one call in each of ``rounds``
    rounds, in microseconds. Each round runs every function in turn: steal and frequency
    changes on a shared machine shift the cases of a round alike, and CPU time does not count
    the time this process waited for a core (wall clock does)."""
    per_round: List[List[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for i, (func, number) in enumerate(calls):
            for _ in range(min(number, 200)):  # warm-up
                func()
            gc.collect()
            start = time.process_time()
            for _ in range(number):
                func()
            per_round[i].append((time.process_time() - start) / number * 1e6)
    return per_round


def cpu_asgi_us(
    cases: Sequence[Tuple[Any, Callable[[], None], Callable[[], None]]],
    path: str = "/",
    number: int = 3_000,
    rounds: int = 7,
) -> List[List[float]]:
    """Mean **process CPU time** of one in-process request for each ``(app, set_up,
    tear_down)``, in microseconds, one figure per round (each round measures every case in
    turn, set up before and torn down after). Take medians, or ratios per round."""
    drivers = [asgi_request_driver(app, path) for app, _, _ in cases]

    async def measure() -> List[List[float]]:
        per_round: List[List[float]] = [[] for _ in cases]
        for _ in range(rounds):
            for i, (_, set_up, tear_down) in enumerate(cases):
                set_up()
                try:
                    for _ in range(200):  # warm-up
                        await drivers[i]()
                    gc.collect()
                    start = time.process_time()
                    for _ in range(number):
                        await drivers[i]()
                    per_round[i].append((time.process_time() - start) / number * 1e6)
                finally:
                    tear_down()
        return per_round

    return asyncio.run(measure())


class OpcodeCount:
    """Python bytecode instructions executed inside ``with OpcodeCount() as counted:``
    (``sys.settrace`` opcode events): a figure that machine load does not move, to read beside
    the CPU times (system calls and C code are not in it)."""

    def __init__(self) -> None:
        self.count = 0

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
        elif event == "opcode":
            self.count += 1
        return self._trace

    def __enter__(self) -> OpcodeCount:
        sys.settrace(self._trace)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)


def opcodes_per_request(app: Any, set_up: Callable[[], None], tear_down: Callable[[], None],
                        path: str = "/", number: int = 20) -> float:
    """Bytecode instructions (:class:`OpcodeCount`) per in-process request to ``app``, after a
    warm-up."""
    drive = asgi_request_driver(app, path)
    counted = OpcodeCount()

    async def measure() -> None:
        for _ in range(50):
            await drive()
        with counted:
            for _ in range(number):
                await drive()

    set_up()
    try:
        asyncio.run(measure())
    finally:
        tear_down()
    return counted.count / number


def verdict(median: float, rounds: Sequence[float], meets: Callable[[float], bool]) -> str:
    """Whether a target is met by the median over the rounds, and whether it held in every
    round, in no round or not in every round: ``"met, not in every round"``."""
    held = [meets(value) for value in rounds]
    every = ("in every round" if all(held) else "in no round" if not any(held)
             else "not in every round")
    return f"{'met' if meets(median) else 'not met'}, {every}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table."""
    lines: List[str] = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
