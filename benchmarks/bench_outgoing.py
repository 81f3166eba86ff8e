"""What carrying the request id into outgoing calls costs: an httpx request through a client
whose transport answers in process (``httpx.MockTransport``, no network), bare and through
:class:`~sherlock_ai.integrations.outgoing.RequestIdTransport` (the code the process-wide
switch runs too), without an id, with an id, and with an id for a host that is not allowed.

    python -m benchmarks.run_all --only bench_outgoing
"""

from __future__ import annotations

import statistics
from typing import Dict

import httpx

from benchmarks.common import cpu_calls_rounds, table
from sherlock_ai.integrations.outgoing import RequestIdTransport
from sherlock_ai.request_id import request_id_var


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"ok")


def run(quick: bool = False) -> Dict[str, str]:
    number, rounds = (500, 3) if quick else (5_000, 9)
    bare = httpx.Client(transport=httpx.MockTransport(_answer))
    carrying = httpx.Client(transport=RequestIdTransport(httpx.MockTransport(_answer),
                                                         allowed_hosts=["billing.internal"]))

    def with_id(call):
        def one() -> None:
            token = request_id_var.set("3f9c1a7e5b2d4c60")
            try:
                call()
            finally:
                request_id_var.reset(token)
        return one

    def plain(call):
        def one() -> None:
            token = request_id_var.set("")
            try:
                call()
            finally:
                request_id_var.reset(token)
        return one

    cases = [
        ("bare client, no id", plain(lambda: bare.get("http://billing.internal/x"))),
        ("RequestIdTransport, no id set",
         plain(lambda: carrying.get("http://billing.internal/x"))),
        ("RequestIdTransport, id set, allowed host (header added)",
         with_id(lambda: carrying.get("http://billing.internal/x"))),
        ("RequestIdTransport, id set, host not allowed",
         with_id(lambda: carrying.get("http://api.example.com/x"))),
    ]
    per_round = cpu_calls_rounds([(call, number) for _, call in cases], rounds)
    base = per_round[0]
    rows = []
    for (name, _), values in zip(cases, per_round):
        added = statistics.median(v - b for v, b in zip(values, base))
        rows.append((name, f"{statistics.median(values):.1f}",
                     "" if values is base else f"{added:+.2f}"))
    bare.close()
    carrying.close()
    return {
        "requests": f"{number:,}",
        "rounds": str(rounds),
        "cost": table(("case", "µs per request (CPU)", "µs over the bare client"), rows),
    }
