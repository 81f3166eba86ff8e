"""Hostile text never forges a log line or a JSON field (property-based)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sherlock_ai import (
    JsonFormatter,
    MemoryTracker,
    PerformanceTimer,
    ResourceTracker,
    is_valid_request_id,
    set_request_id,
)
from sherlock_ai.formatting import log_safe
from sherlock_ai.logs.records import install_request_id_factory

LINE_BREAKS = ("\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


@given(st.text())
def test_log_safe_output_is_one_line_of_printable_text(text):
    out = log_safe(text)
    assert len(out.splitlines()) <= 1
    assert not any(ch in out for ch in LINE_BREAKS)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in out)


@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_only_the_bounded_charset_passes_as_a_request_id(value):
    valid = is_valid_request_id(value)
    expected = 1 <= len(value) <= 128 and all(
        c.isascii() and (c.isalnum() or c in "._:-") for c in value
    ) and any(c.isascii() and c.isalnum() for c in value)  # "-" marks lines outside requests
    assert valid == expected


@settings(max_examples=60, deadline=None)
@given(name=st.text(min_size=1), error=st.text())
def test_names_and_errors_cannot_forge_lines_or_json_fields(name, error):
    install_request_id_factory()
    text_out, json_out = io.StringIO(), io.StringIO()
    text_handler = logging.StreamHandler(text_out)
    text_handler.setFormatter(logging.Formatter("%(request_id)s %(message)s"))
    json_handler = logging.StreamHandler(json_out)
    json_handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("MonitoringLogger")
    logger.addHandler(text_handler)
    logger.addHandler(json_handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        try:
            with MemoryTracker(name, trace_malloc=False):
                raise ValueError(error)
        except ValueError:
            pass
    finally:
        logger.removeHandler(text_handler)
        logger.removeHandler(json_handler)
        logger.setLevel(old_level)
    assert text_out.getvalue().count("\n") == 1
    assert not any(ch in text_out.getvalue()[:-1] for ch in LINE_BREAKS)
    (line,) = json_out.getvalue().splitlines()
    record = json.loads(line)
    assert record["status"] == "ERROR" and record["request_id"] == "-"
    assert record["message"].startswith("MEMORY | ")


@given(st.text())
def test_set_request_id_refuses_everything_it_would_not_log(value):
    if is_valid_request_id(value):
        assert set_request_id(value) == value
    else:
        try:
            set_request_id(value)
        except ValueError:
            return
        raise AssertionError(f"accepted {value!r}")


@pytest.mark.parametrize("make", [
    lambda: MemoryTracker("nested", trace_malloc=False),
    lambda: PerformanceTimer("nested"),
    lambda: ResourceTracker("nested"),
], ids=["MemoryTracker", "PerformanceTimer", "ResourceTracker"])
def test_entering_a_tracker_that_is_measuring_raises_and_its_line_is_kept(records, make):
    tracker = make()
    already = r"is already measuring a block: an instance measures one block at a time"
    with tracker, pytest.raises(RuntimeError, match=already), tracker:
        pass  # pragma: no cover - never entered
    lines = [r.getMessage() for r in records.records if "| nested |" in r.getMessage()]
    assert len(lines) == 1 and "| nested | SUCCESS |" in lines[0], lines
    with tracker:  # free again once its block ended
        pass
    assert len([r for r in records.records if "| nested |" in r.getMessage()]) == 2
