"""The leak watch under keep-alive connections: a connection keeps its last request's headers
and scope until its next request, so each idle connection holds an untraced request when a
window opens, and a traced one from its first request under tracing on."""

from __future__ import annotations

import random
from typing import Dict, List, Set

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


def serve(requests: int, seed: int) -> Set[str]:
    """Every route suspected at any time while ``requests`` random requests are served on
    :data:`CONNECTIONS` connections, each connection holding its last request's headers."""
    watch = LeakWatch()
    rng = random.Random(seed)
    last_request: Dict[int, Dict[str, str]] = {}
    suspected: Set[str] = set()
    try:
        for _ in range(requests):
            connection = rng.randrange(CONNECTIONS)
            route = rng.choice(ROUTES)
            request = watch.request_started(route, None, ("127.0.0.1", 40_000 + connection))
            last_request[connection] = handle(route)
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
    assert serve(4_000, seed) == {"POST /cart"}


def helper_everywhere(route: str) -> Dict[str, str]:
    """Every route calls a helper that leaks 2 KB."""
    KEPT.append(bytes(2048))
    return {f"header-{n}": str(n) * 8 for n in range(12)}


def serve_without_keep_alive(requests: int, seed: int) -> Set[str]:
    """Every route suspected while ``requests`` random requests come each on a connection of
    its own (closed after it: nothing is held between requests)."""
    watch = LeakWatch()
    rng = random.Random(seed)
    suspected: Set[str] = set()
    try:
        for port in range(requests):
            route = rng.choice(ROUTES)
            request = watch.request_started(route, None, ("127.0.0.1", port))
            helper_everywhere(route)
            watch.request_finished(request)
            suspected |= {suspect.name for suspect in watch.suspects()}
    finally:
        watch.close()
        KEPT.clear()
    return suspected


@pytest.mark.parametrize("seed", [0, 2])
def test_connections_that_serve_one_request_do_not_hide_a_leak_on_every_route(seed):
    # Counted as a level, connections that each serve one request rise with the requests of
    # every route: they took the place of a leak shared by all routes (nothing, or a few
    # routes, named). Only connections known to be kept alive are counted.
    assert serve_without_keep_alive(6_000, seed) == set(ROUTES)
