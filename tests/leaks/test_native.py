"""Leaks tracemalloc cannot see, through a real uvicorn on 127.0.0.1: ``/thumbnail`` keeps a
64 KB buffer from libc's ``malloc`` per request (filled, so resident; never freed) among nine
clean routes, random traffic at concurrency 8."""

from __future__ import annotations

import pytest

from leak_server import NATIVE_LEAK_SIZE, NATIVE_LEAKING_ROUTE

from .test_servers import serve_and_drive

pytestmark = pytest.mark.servers

NAME = f"GET {NATIVE_LEAKING_ROUTE}"


def assert_only_the_native_leak(suspects) -> None:
    assert suspects, "the route leaking through malloc was not flagged"
    assert {(s["name"], s["kind_of_leak"]) for s in suspects} == {(NAME, "native")}
    for suspect in suspects:
        assert suspect["message"].startswith(
            f"LEAK SUSPECT | {NAME} | +")
        assert "/request (native: not seen by tracemalloc) | RSS +" in suspect["message"]
        assert suspect["sites"] == [] and suspect["rss_growth"] > 0
        # malloc's own header and page rounding add a little to the 64 KB.
        assert suspect["per_request"] == pytest.approx(NATIVE_LEAK_SIZE, rel=0.25)


def test_uvicorn_a_route_leaking_through_malloc_is_a_native_suspect_within_3000_requests(
        tmp_path):
    assert_only_the_native_leak(serve_and_drive(tmp_path, "native", 3_000, seed=31))


@pytest.mark.slow
def test_uvicorn_no_clean_route_is_a_native_suspect_in_20000_requests(tmp_path):
    # About two and a half minutes on the test machine: hence slow.
    assert_only_the_native_leak(serve_and_drive(tmp_path, "native", 20_000, seed=32))


def test_uvicorn_the_same_app_without_the_leak_has_no_suspect_in_4000_requests(tmp_path):
    assert serve_and_drive(tmp_path, "native-clean", 4_000, seed=33) == []
