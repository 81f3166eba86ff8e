"""Ten async request handlers for the leak watch tests: one keeps 4 KB per request in a
module-level list, the others only use memory while they run (or fill a small bounded cache
once), and every one of them awaits."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Awaitable, Callable, Dict, List, Tuple

LEAK_SIZE = 4096
RETAINED: List[bytes] = []
#: Bytes each leaking request keeps: the bytes object and its slot in the list.
RETAINED_PER_REQUEST = sys.getsizeof(b"x" * LEAK_SIZE) + 8

_settings_cache: Dict[int, str] = {}


async def leaky_orders(n: int) -> int:
    rows = [{"order": i, "total": i * 3} for i in range(20)]
    await asyncio.sleep(0)
    RETAINED.append(b"x" * LEAK_SIZE)  # LEAKS
    await asyncio.sleep(0)
    return len(rows) + n


async def list_items(n: int) -> int:
    items = [f"item-{i}" * 4 for i in range(50)]
    await asyncio.sleep(0)
    return len(json.dumps(items)) + n


async def get_item(n: int) -> int:
    item = {"id": n, "name": "thing" * 20, "tags": ["a", "b", "c"]}
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return len(item["name"])


async def upload(n: int) -> int:
    # A large buffer alive across awaits: in-flight memory that must not look like a leak.
    buffer = bytearray(64 * 1024)
    await asyncio.sleep(0)
    buffer[0] = n % 256
    await asyncio.sleep(0)
    return len(buffer)


async def search(n: int) -> int:
    words = [str(i) * (n % 7 + 1) for i in range(200)]
    await asyncio.sleep(0)
    return sum(len(w) for w in words)


async def settings(n: int) -> str:
    # A bounded cache: fills within its first few dozen requests, then stops growing.
    key = n % 16
    if key not in _settings_cache:
        _settings_cache[key] = "v" * 512
    await asyncio.sleep(0)
    return _settings_cache[key]


async def health(n: int) -> int:
    await asyncio.sleep(0)
    return 200


async def report(n: int) -> int:
    table = [[i * j for j in range(20)] for i in range(20)]
    await asyncio.sleep(0)
    text = "\n".join(",".join(map(str, row)) for row in table)
    await asyncio.sleep(0)
    return len(text)


async def login(n: int) -> int:
    session = {"user": f"user{n}", "token": "t" * 64, "roles": ["reader"] * 5}
    await asyncio.sleep(0)
    return len(session["token"])


async def stats(n: int) -> int:
    counts: Dict[str, int] = {}
    for i in range(100):
        counts[str(i % 17)] = counts.get(str(i % 17), 0) + 1
    await asyncio.sleep(0)
    return len(counts)


def remember(event: dict) -> None:
    """Shared code that keeps what it is given: the leak is on this line, not in the
    endpoint that calls it."""
    HISTORY.append(json.dumps(event).encode().ljust(HELPER_LEAK_SIZE))  # LEAKS_IN_HELPER


HELPER_LEAK_SIZE = 2048
HISTORY: List[bytes] = []
HELPER_RETAINED_PER_REQUEST = sys.getsizeof(b"x" * HELPER_LEAK_SIZE) + 8


async def audit(n: int) -> int:
    event = {"user": n, "action": "audit"}
    await asyncio.sleep(0)
    remember(event)
    await asyncio.sleep(0)
    return n


Handler = Callable[[int], Awaitable[object]]
LEAKING_ROUTE = "POST /orders"
ROUTES: Tuple[Tuple[str, Handler], ...] = (
    (LEAKING_ROUTE, leaky_orders),
    ("GET /items", list_items),
    ("GET /items/{item_id}", get_item),
    ("POST /upload", upload),
    ("GET /search", search),
    ("GET /settings", settings),
    ("GET /health", health),
    ("GET /report", report),
    ("POST /login", login),
    ("GET /stats", stats),
)
#: The same traffic with the leak in shared code called by one endpoint instead.
HELPER_LEAKING_ROUTE = "POST /audit"
ROUTES_WITH_HELPER_LEAK = ((HELPER_LEAKING_ROUTE, audit),) + ROUTES[1:]
