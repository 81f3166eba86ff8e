"""The report on every Python that ``requires-python`` admits (3.9 and later): no pattern uses
what only 3.11's ``re`` reads (possessive quantifiers, atomic groups), and times are read the
same way whatever ``datetime.fromisoformat`` of the running Python accepts."""

from __future__ import annotations

import importlib
import pkgutil
import re
from datetime import datetime, timedelta, timezone

import pytest

import sherlock_ai
from sherlock_ai.report import parse_moment
from sherlock_ai.report.checks import iso_datetime
from sherlock_ai.report.fastpath import DEFAULT_PREFIX, FastLines

try:
    from re import _parser as sre_parse  # Python 3.11 and later
except ImportError:
    import sre_parse  # type: ignore[no-redef]

# Opcodes that Python 3.9 and 3.10 do not know.
NEWER = {name for name in ("POSSESSIVE_REPEAT", "ATOMIC_GROUP")
         if hasattr(sre_parse, name)}


def _opcodes(parsed):
    for op, arg in parsed:
        yield str(op)
        for part in arg if isinstance(arg, (tuple, list)) else ():
            if isinstance(part, sre_parse.SubPattern):
                yield from _opcodes(part)
            elif isinstance(part, (tuple, list)):
                for inner in part:
                    if isinstance(inner, sre_parse.SubPattern):
                        yield from _opcodes(inner)


def _package_patterns():
    # Integrations import their frameworks (Django's need settings): left out.
    for info in pkgutil.walk_packages(sherlock_ai.__path__, "sherlock_ai."):
        if info.name.startswith("sherlock_ai.integrations"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue  # an exporter whose optional dependency is not installed
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                yield f"{info.name}.{name}", value.pattern
    yield "FastLines text", FastLines(DEFAULT_PREFIX, float)._text.__self__.pattern


def test_no_pattern_needs_python_3_11():
    patterns = dict(_package_patterns())
    assert "sherlock_ai.report.fastpath._JSON" in patterns
    used = {where: NEWER & set(_opcodes(sre_parse.parse(text))) for where, text in
            patterns.items()}
    assert {where: ops for where, ops in used.items() if ops} == {}


def test_json_strings_with_escapes_still_take_the_fast_path():
    line = ('{"timestamp": "2026-12-01T10:00:00.250+00:00", "level": "INFO", '
            '"logger": "MonitoringLogger", "pid": 7, "message": "MEMORY | a \\"b\\" \\\\ c", '
            '"request_id": "r1", "kind": "memory", "name": "f", "status": "ERROR", '
            '"duration": 0.5, "concurrent": 1, "error": "Value\\\\Error: \\"x\\"", '
            '"rss": 100, "rss_change": -5}')
    row = FastLines(DEFAULT_PREFIX, float).json(line, None)
    assert row is not None
    assert row[1:] == ("f", datetime(2026, 12, 1, 10, 0, 0, 250000,
                                     tzinfo=timezone.utc).timestamp(),
                       7, "r1", "ERROR", 0.5, 100.0, -5.0, None)
    # A quote left unescaped inside the message is not a line of ours.
    assert FastLines(DEFAULT_PREFIX, float).json(line.replace('\\"b\\"', '"b"'), None) is None


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01", datetime(2026, 12, 1)),
    ("2026-12-01T10", datetime(2026, 12, 1, 10)),
    ("2026-12-01 10:00:00,5", datetime(2026, 12, 1, 10, 0, 0, 500000)),
    ("2026-12-01T10:00:00.123456789Z",
     datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)),
    ("2026-12-01T10:00:00.25+0100",
     datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1)))),
])
def test_iso_times_read_alike_on_every_python(text, expected):
    assert iso_datetime(text) == expected


@pytest.mark.parametrize("text", ["2026-12-01T10:00:00 junk", "yesterday", "2026-13-01"])
def test_a_time_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError):
        iso_datetime(text)
    with pytest.raises(ValueError, match="not a time"):
        parse_moment(text)


def test_moments_with_a_zone_or_a_long_fraction():
    assert parse_moment("2026-12-01T10:00:00.5Z") == parse_moment("2026-12-01 10:00:00.500+00:00")
