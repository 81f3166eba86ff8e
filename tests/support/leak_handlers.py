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


# -- routes that share code: the code cannot name the route, the counts can ---------------

FACTORY_RETAINED: List[bytes] = []


def make_route(i: int, leaks: bool) -> Handler:
    """Ten routes made by one factory: distinct functions sharing one code object."""

    async def handler(n: int) -> int:
        rows = [str(k) * 3 for k in range(40 + i)]
        await asyncio.sleep(0)
        if leaks:
            FACTORY_RETAINED.append(bytes(LEAK_SIZE))  # FACTORY_LEAKS
        await asyncio.sleep(0)
        return len(rows) + n

    return handler


FACTORY_LEAKING_ROUTE = "GET /route7"
FACTORY_ROUTES: Tuple[Tuple[str, Handler], ...] = tuple(
    (f"GET /route{i}", make_route(i, leaks=i == 7)) for i in range(10))
FACTORY_RETAINED_PER_REQUEST = sys.getsizeof(bytes(LEAK_SIZE)) + 8

JOURNAL: List[bytes] = []


def record(event: dict, keep: bool = False) -> int:
    """A helper three routes call; only one of them passes ``keep``."""
    line = json.dumps(event)
    if keep:
        JOURNAL.append(bytes(HELPER_LEAK_SIZE))  # FLAG_LEAKS
    return len(line)


def flag_route(name: str, keep: bool) -> Handler:
    async def handler(n: int) -> int:
        await asyncio.sleep(0)
        size = record({"route": name, "n": n}, keep=keep)
        await asyncio.sleep(0)
        return size

    handler.__name__ = name
    return handler


FLAG_LEAKING_ROUTE = "POST /checkout"
ROUTES_WITH_FLAG_LEAK = (
    (FLAG_LEAKING_ROUTE, flag_route("checkout", True)),
    ("POST /cart", flag_route("cart", False)),
    ("POST /wishlist", flag_route("wishlist", False)),
) + ROUTES[1:8]

SHARED: List[bytes] = []


def keep_bytes(size: int) -> None:
    SHARED.append(bytes(size))  # SHARED_LEAKS


def sized_route(size: int) -> Handler:
    async def handler(n: int) -> int:
        await asyncio.sleep(0)
        if size:
            keep_bytes(size)
        await asyncio.sleep(0)
        return n

    return handler


#: Two routes keep at one line, 2 KB and 6 KB per request.
SHARED_SITE_SIZES = {"POST /small": 2048, "POST /large": 6144}
ROUTES_SHARING_A_SITE = tuple((key, sized_route(size)) for key, size in
                              SHARED_SITE_SIZES.items()) + ROUTES[1:9]


def retained_per_request(size: int) -> int:
    return sys.getsizeof(bytes(size)) + 8
