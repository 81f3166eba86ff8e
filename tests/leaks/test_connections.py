"""The leak watch under keep-alive connections: a connection keeps its last request's headers
and scope until its next request, so each idle connection holds an untraced request when a
window opens, and a traced one from its first request under tracing on."""

from __future__ import annotations

import random
from typing import Callable, Dict, List, Set

import pytest

from sherlock_ai.leaks import LeakWatch

KEPT: List[bytes] = []
ROUTES = [f"GET /items/{i}" for i in range(13)] + ["POST /cart"]
#: Keep-alive connections the requests come on, each picked at random per request.
CONNECTIONS = 64


def handle(route: str) -> Dict[str, str]:
    """A request's headers as the server keeps them (about 1.5 KB); POST /cart leaks."""
    headers = {f"header-{n}": str(n) * 8 for n in range(12)}
    if route == "POST /cart":
        KEPT.append(bytes(4096))
    return headers


def suspected_while(requests: int, seed: int, keep_alive: bool,
                    work: Callable[[str], Dict[str, str]]) -> Set[str]:
    """Every route suspected at any time while ``requests`` random requests run ``work``:
    with ``keep_alive``, on :data:`CONNECTIONS` connections each holding its last request's
    headers; without, each on a connection of its own (closed after it: nothing is held
    between requests)."""
    watch = LeakWatch()
    rng = random.Random(seed)
    last_request: Dict[int, Dict[str, str]] = {}
    suspected: Set[str] = set()
    try:
        for number in range(requests):
            connection = rng.randrange(CONNECTIONS) if keep_alive else number
            route = rng.choice(ROUTES)
            request = watch.request_started(route, None, ("127.0.0.1", 40_000 + connection))
            headers = work(route)
            if keep_alive:
                last_request[connection] = headers
            watch.request_finished(request)
            suspected |= {suspect.name for suspect in watch.suspects()}
    finally:
        watch.close()
        KEPT.clear()
    return suspected


@pytest.mark.parametrize("seed", [1, 2])
def test_what_a_keep_alive_connection_holds_between_requests_is_not_blamed(seed):
    # As idle connections serve their first request under tracing, the traced level steps
    # up by one request's headers each: fitted on the routes alone, that ramp named the
    # routes served meanwhile (on every seed tried); the connections that served a request
    # while tracing are now a level of their own.
    assert suspected_while(4_000, seed, True, handle) == {"POST /cart"}


def helper_everywhere(route: str) -> Dict[str, str]:
    """Every route calls a helper that leaks 2 KB."""
    KEPT.append(bytes(2048))
    return {f"header-{n}": str(n) * 8 for n in range(12)}


@pytest.mark.parametrize("seed", [0, 2])
def test_connections_that_serve_one_request_do_not_hide_a_leak_on_every_route(seed):
    # Counted as a level, connections that each serve one request rise with the requests of
    # every route: they took the place of a leak shared by all routes (nothing, or a few
    # routes, named). Only connections known to be kept alive are counted.
    assert suspected_while(6_000, seed, False, helper_everywhere) == set(ROUTES)
