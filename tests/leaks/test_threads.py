"""The leak watch under a server that serves each request on a new thread (werkzeug's
threaded server does): the thread holds its socket's buffers before the request is counted as
started and after it is counted as finished, for as long as it takes to send the response."""

from __future__ import annotations

import random
import threading
import time
from typing import List, Set

import pytest

from sherlock_ai.leaks import LeakWatch

KEPT: List[bytes] = []
ROUTES = [f"GET /catalog/{i}" for i in range(8)] + ["GET /download", "POST /cart"]
#: What a request's thread holds from its start to its end (a socket's read buffer).
THREAD_BUFFER = 32_768
#: How long a ``GET /download`` thread stays after its request is counted as finished (it
#: sends a large body to a slow client); other threads end at once.
DOWNLOAD_LINGERS_S = 0.2


def handle(route: str) -> int:
    scratch = [str(n) * 4 for n in range(100)]
    if route == "POST /cart":
        KEPT.append(bytes(4096))
    return len(scratch)


def serve_one(watch: LeakWatch, route: str, answered: threading.Semaphore) -> None:
    """One request on a thread of its own, as the server runs it."""
    buffer = bytearray(THREAD_BUFFER)  # made before the application is called
    request = watch.request_started(route, None)
    handle(route)
    watch.request_finished(request)
    answered.release()  # the client has its response: it sends its next request
    if route == "GET /download":
        time.sleep(DOWNLOAD_LINGERS_S)
    del buffer


def serve(requests: int, seed: int, reaped_past: int = 64) -> Set[str]:
    """Every route suspected at any time while ``requests`` random requests are served, eight
    at a time, each on a new thread. The server keeps its finished threads until it holds
    more than ``reaped_past`` of them, then lets them go (socketserver's reaps them at each
    new one)."""
    watch = LeakWatch()
    rng = random.Random(seed)
    answered = threading.Semaphore(8)
    threads: List[threading.Thread] = []
    suspected: Set[str] = set()
    try:
        for _ in range(requests):
            answered.acquire()
            thread = threading.Thread(target=serve_one,
                                      args=(watch, rng.choice(ROUTES), answered))
            thread.start()
            threads.append(thread)
            if len(threads) > reaped_past:
                threads = [t for t in threads if t.is_alive()]
            suspected |= {suspect.name for suspect in watch.suspects()}
        for thread in threads:
            thread.join()
        suspected |= {suspect.name for suspect in watch.suspects()}
    finally:
        watch.close()
        KEPT.clear()
    return suspected


@pytest.mark.parametrize("seed", [2, 5])
def test_memory_a_request_thread_holds_outside_the_request_is_not_blamed_on_its_route(seed):
    # The threads alive when a window opens hold untraced buffers; as lingering download
    # threads replace them, the traced level rises with that route's count. Fitted on the
    # routes alone, GET /download (and, in some windows, a catalog route) was named at the
    # buffer's line; the threads started while tracing are now a level of their own. Between
    # windows the threads' stacks raise the RSS's high-water mark when more of them are alive
    # than ever: the native fit named GET /download or a catalog route (seeds 5 and 2) until
    # the most threads alive became its level too.
    assert serve(4_000, seed=seed) == {"POST /cart"}


@pytest.mark.parametrize("seed", [0, 1])
def test_finished_threads_let_go_in_batches_are_not_a_leak(seed):
    # Each finished thread the server keeps holds a few hundred bytes at threading.py lines
    # (its Thread, Event and Condition); they grow with every request until the server lets
    # 200 of them go, like a leak on every route within a window. Before windows that see a
    # site give back its memory cleared it, a catalog route or GET /download was named at
    # those lines in 6 runs of 8 (and, with threads let go past 64, 1 run in 10 of the test
    # above under load).
    assert serve(4_000, seed=seed, reaped_past=200) == {"POST /cart"}
