"""The memory guard's lines, written by its events and parsed back by the line schema (the
report reads them so); text and JSON."""

from __future__ import annotations

import json
import logging

import pytest

from sherlock_ai.guard.events import BudgetEvent, LimitEvent
from sherlock_ai.logs.json_lines import JsonFormatter
from sherlock_ai.logs.schema import locate, parse_message

MB = 1 << 20


def parsed(message: str):
    at, tag = locate("2026-12-01 10:00:00 - 07ca74ed94a1b2c3 - MonitoringLogger - WARNING - "
                     + message)
    assert at > 0
    return parse_message(message, tag)


def test_a_budget_line_parses_back():
    event = BudgetEvent("POST /export", "POST", "/export", int(182.4 * MB), 50 * MB,
                        "rss_change")
    assert event.message() == "MEMORY BUDGET | POST /export | +182.40MB > 50.00MB | RSS change"
    fields = parsed(event.message())
    assert fields == {"kind": "memory_budget", "name": "POST /export", "method": "POST",
                      "route": "/export", "measured_bytes": pytest.approx(182.4 * MB, rel=1e-4),
                      "budget_bytes": 50 * MB, "measure": "rss_change"}


def test_a_traced_peak_budget_line_parses_back():
    event = BudgetEvent("GET /a | b", "GET", "/a | b", 3 * MB, MB, "traced_peak")
    assert event.message().endswith("| +3.00MB > 1.00MB | Traced peak")
    fields = parsed(event.message())
    assert (fields["name"], fields["measure"]) == ("GET /a | b", "traced_peak")


def test_an_rss_peak_budget_line_parses_back():
    event = BudgetEvent("GET /build", "GET", "/build", 60 * MB, 20 * MB, "rss_peak")
    assert event.message() == "MEMORY BUDGET | GET /build | +60.00MB > 20.00MB | RSS peak"
    assert parsed(event.message())["measure"] == "rss_peak"


LIMIT_EVENTS = [
    (LimitEvent("crossed", 812 * MB, 800 * MB, "log", grew_most=[
        {"route": "POST /export", "bytes": 120 * MB, "requests": 12},
        {"route": "GET /a", "bytes": 3 * MB, "requests": 40}]),
     "MEMORY LIMIT | crossed | RSS 812.00MB > 800.00MB | action: log | grew most: "
     "POST /export +120.00MB (12 requests), GET /a +3.00MB (40 requests)"),
    (LimitEvent("crossed", 812 * MB, 800 * MB, "log", grew_most=[
        {"route": "GET /b", "bytes": MB, "requests": 1}],
        top_sites=[{"file": "shop/cart.py", "line": 23, "size": 80 * MB, "count": 9},
                   {"file": "shop/x.py", "line": 7, "size": 2 * MB, "count": 1}]),
     "MEMORY LIMIT | crossed | RSS 812.00MB > 800.00MB | action: log | grew most: "
     "GET /b +1.00MB (1 requests) | top sites: shop/cart.py:23 +80.00MB, shop/x.py:7 +2.00MB"),
    (LimitEvent("crossed", 812 * MB, 800 * MB, "log", grew_most=[]),
     "MEMORY LIMIT | crossed | RSS 812.00MB > 800.00MB | action: log | grew most: none"),
    (LimitEvent("back_under", 700 * MB, 800 * MB, "log"),
     "MEMORY LIMIT | back under | RSS 700.00MB < 800.00MB"),
    (LimitEvent("shedding", 812 * MB, 800 * MB, "shed", retry_after=5),
     "MEMORY LIMIT | shedding | RSS 812.00MB > 800.00MB | 503 with Retry-After: 5"),
    (LimitEvent("shed_stopped", 700 * MB, 800 * MB, "shed", shed_requests=37),
     "MEMORY LIMIT | shed 37 requests | RSS 700.00MB < 800.00MB"),
    (LimitEvent("recycling", 812 * MB, 800 * MB, "recycle", pid=1234, in_flight=0, shed_for=60),
     "MEMORY LIMIT | recycling | RSS 812.00MB > 800.00MB | pid 1234 exits after 0 in-flight "
     "requests | still over after 60s of shedding"),
    (LimitEvent("shedding", 812 * MB, 800 * MB, "shed", retry_after=5, shed_for=60,
                excluded_too=True),
     "MEMORY LIMIT | shedding | RSS 812.00MB > 800.00MB | 503 with Retry-After: 5 | excluded "
     "paths too: still over after 60s of shedding and no server replaces this worker"),
    (LimitEvent("recycling", 812 * MB, 800 * MB, "recycle", pid=1234, in_flight=2,
                grew_most=[{"route": "TASK shop.tasks.resize", "bytes": 30 * MB,
                            "requests": 12}]),
     "MEMORY LIMIT | recycling | RSS 812.00MB > 800.00MB | pid 1234 exits after 2 in-flight "
     "requests | grew most: TASK shop.tasks.resize +30.00MB (12 requests)"),
]


@pytest.mark.parametrize("event, text", LIMIT_EVENTS, ids=[e.state for e, _ in LIMIT_EVENTS])
def test_each_limit_line_is_written_as_agreed_and_parses_back(event, text):
    assert event.message() == text
    fields = parsed(text)
    expected = event.as_dict()
    assert fields["kind"] == "rss_limit"
    for key in ("state", "rss_bytes", "limit_bytes", "shed_requests", "pid", "in_flight",
                "retry_after"):
        assert fields.get(key) == expected.get(key), key
    if event.state != "back_under":
        assert fields["action"] == event.action
    if event.state in ("crossed", "recycling"):
        assert fields.get("grew_most") == event.grew_most
        assert fields.get("top_sites") == (
            None if event.top_sites is None
            else [{k: s[k] for k in ("file", "line", "size")} for s in event.top_sites])


def test_levels_are_warning_for_trouble_and_info_for_recovery():
    levels = {e.state: e.level for e, _ in LIMIT_EVENTS}
    assert levels == {"crossed": logging.WARNING, "back_under": logging.INFO,
                      "shedding": logging.WARNING, "shed_stopped": logging.INFO,
                      "recycling": logging.WARNING}


def test_the_json_line_carries_the_agreed_fields():
    event = BudgetEvent("POST /export", "POST", "/export", 3 * MB, MB, "rss_change")
    record = logging.LogRecord("MonitoringLogger", logging.WARNING, "x", 0, event.message(),
                               (), None)
    record.sherlock = event
    out = json.loads(JsonFormatter().format(record))
    assert {k: out[k] for k in ("event", "route", "measured_bytes", "budget_bytes",
                                "measure")} == {
        "event": "memory_budget", "route": "/export", "measured_bytes": 3 * MB,
        "budget_bytes": MB, "measure": "rss_change"}
    limit = LIMIT_EVENTS[-1][0]
    record = logging.LogRecord("MonitoringLogger", logging.WARNING, "x", 0, limit.message(),
                               (), None)
    record.sherlock = limit
    out = json.loads(JsonFormatter().format(record))
    assert {k: out[k] for k in ("event", "state", "rss_bytes", "limit_bytes", "action")} == {
        "event": "rss_limit", "state": "recycling", "rss_bytes": 812 * MB,
        "limit_bytes": 800 * MB, "action": "recycle"}


def test_a_plain_memory_line_is_still_a_memory_line():
    assert locate("x MEMORY | GET /a | SUCCESS | 0.1s | Current: 1.00MB | Change: +0.00B")[1] \
        == "MEMORY"
    assert locate("x MEMORY LIMIT | back under | RSS 1.00MB < 2.00MB")[1] == "MEMORY LIMIT"
