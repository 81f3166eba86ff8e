"""One regular expression per line for the layouts sherlock_ai writes most: MEMORY and
PERFORMANCE lines of the default text format (with or without the pid after the time), of a
``log_format`` given to the report, and of :class:`sherlock_ai.JsonFormatter`.

A line these patterns match is read into a row tuple (or :data:`SKIP`) without building the
fields dict of the line schema (or of ``json.loads``); any other line (other tags, an
``Error`` or ``Args`` field, a name holding ``|``, escapes in a JSON string, old lines without
a pid) returns ``None`` here and is read by the general path, which gives the same fields for
the lines both read.

A row is ``(kind, name, timestamp, pid, request_id, status, duration, rss, rss_change,
traced_peak)``, the fields of :class:`sherlock_ai.report.reader.Record` it stands for.
"""

from __future__ import annotations

import calendar
import enum
import re
from datetime import datetime
from typing import Callable, FrozenSet, Optional, Tuple, Union

from ..bounded import BoundedCache
from ..logs.schema import parse_size
from .checks import NAME_LIMIT, printable, stamp_checked

Row = Tuple[str, str, Optional[float], Optional[int], str, str, float, Optional[float],
            Optional[float], Optional[float]]

_MESSAGE = (r"(?P<tag>MEMORY|PERFORMANCE) \| (?P<name>[^|]+) \| (?P<status>SUCCESS|ERROR)"
            r" \| (?P<duration>\d{1,9}\.\d{1,9})s"
            r"(?: \| Current: (?P<rss>\S+) \| Change: (?P<change>\S+))?"
            r"(?: \| Traced: \S+ \(Peak: (?P<peak>\S+)\))?(?: \| Concurrent: \d+)?")
# The default format, "%(asctime)s - %(request_id)s - %(name)s - %(levelname)s - ", and the
# same with "%(process)d - " after the time.
DEFAULT_PREFIX = (r"(?P<asctime>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d{1,6})?) - "
                  r"(?:(?P<process>\d{1,10}) - )?(?P<request_id>[^ ]*) - (?P<logger>[^ ]*) - "
                  r"[^ ]* - ")
_GROUPS = ("asctime", "process", "request_id", "logger", "tag", "name", "status", "duration",
           "rss", "change", "peak")
_PREFIX_GROUPS = ("asctime", "process", "request_id", "logger")
_OUR_LOGGERS = frozenset({"MonitoringLogger", "PerformanceLogger"})
_KIND = {"MEMORY": "memory", "PERFORMANCE": "performance"}
# The inside of a JSON string, in linear time on every Python we support (possessive
# quantifiers need 3.11): a run of plain characters, then escapes each followed by such a
# run. A plain character is never a backslash, so no text splits two ways between the parts
# and a failed match gives each character back once.
_STRING = r'[^"\\]*(?:\\.[^"\\]*)*'
_JSON = re.compile(
    r'\{"timestamp": "(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})\+00:00", '
    r'"level": "[A-Z]*", "logger": "([^"\\]*)", "pid": (\d{1,10}), '
    r'"message": "' + _STRING + r'", "request_id": "([^"\\]*)"'
    r'(?:, "trace_id": "[^"\\]*")?(?:, "span_id": "[^"\\]*")?'
    r', "kind": "(memory|performance)", "name": "([^"\\]*)", "status": "(SUCCESS|ERROR)", '
    r'"duration": (\d{1,9}(?:\.\d{1,17})?(?:e-\d\d)?), "concurrent": \d+'
    r'(?:, "error": "' + _STRING + r'")?'
    r'(?:, "rss": (-?\d{1,19}), "rss_change": (-?\d{1,19}))?'
    r'(?:, "traced": -?\d{1,19}, "traced_peak": (-?\d{1,19}))?\}')


class Skip(enum.Enum):
    """What the fast path returns for a line of ours of a kind not wanted from its file."""

    SKIP = "skip"


SKIP = Skip.SKIP
# Size texts ("61.00MB") and seconds kept converted; cleared past this many (memory stays flat).
_SIZES_KEPT = 8192


class FastLines:
    """Reads the common layouts of text lines (``prefix``: the pattern of what comes before
    the message, with the groups ``asctime``, ``process``, ``request_id`` when it has them)
    and of JSON lines; ``stamp`` converts a text time stamp."""

    def __init__(self, prefix: str, stamp: Callable[[str], float]) -> None:
        missing = "".join(f"(?P<{name}>)" for name in _PREFIX_GROUPS
                          if f"(?P<{name}>" not in prefix)
        self._text = re.compile(missing + prefix + _MESSAGE, re.S).fullmatch
        self._stamp = stamp
        self._sizes: BoundedCache[str, Optional[float]] = BoundedCache(_SIZES_KEPT)
        self._last: Tuple[str, Optional[float]] = ("", None)
        self._seconds: BoundedCache[str, int] = BoundedCache(_SIZES_KEPT)
        self._hours: BoundedCache[str, int] = BoundedCache(_SIZES_KEPT)

    def size(self, text: str) -> Optional[float]:
        value = self._sizes.get(text)
        if value is None:
            value = self._sizes.keep(text, parse_size(text))
        return value

    def text(self, line: str, kinds: Optional[FrozenSet[str]], strict: bool = False
             ) -> Union[Row, Skip, None]:
        """The row of a text line, or ``None`` when the general path is to read it
        (``strict``: also when a logger named in the line is not one of ours)."""
        found = self._text(line)
        if found is None:
            return None
        asctime, pid, request_id, logger, tag, name, status, duration, rss, change, peak = \
            found.group(*_GROUPS)
        if strict and logger and logger not in _OUR_LOGGERS:
            return None
        if not name.isprintable() or len(name) > NAME_LIMIT:
            name = printable(name)
        kind = _KIND[tag]
        if (rss is None) is (kind == "memory"):
            return None
        if kinds is not None and kind not in kinds:
            return SKIP
        if asctime != self._last[0]:
            self._last = (asctime, self._stamp(asctime) if asctime else None)
        size = self.size
        return (kind, name, self._last[1], int(pid) if pid else None, request_id or "-",
                status, float(duration), None if rss is None else size(rss),
                None if change is None else size(change), None if peak is None else size(peak))

    def json(self, line: str, kinds: Optional[FrozenSet[str]], strict: bool = False
             ) -> Union[Row, Skip, None]:
        """The row of a JSON line, or ``None`` when the general path is to read it."""
        found = _JSON.fullmatch(line)
        if found is None:
            return None
        whole, ms, logger, pid, request_id, kind, name, status, duration, rss, change, peak = \
            found.groups()
        if strict and logger not in _OUR_LOGGERS:
            return None
        if not name.isprintable() or len(name) > NAME_LIMIT:
            name = printable(name)
        if kinds is not None and kind not in kinds:
            return SKIP
        start = self._seconds.get(whole)
        if start is None:
            start = self._second(whole)
        # As datetime.timestamp() computes it, so that both paths give the same float.
        return (kind, name, (start + int(ms) * 1000) / 1_000_000, int(pid), request_id, status,
                float(duration), None if rss is None else float(rss),
                None if change is None else float(change), None if peak is None else float(peak))

    def _second(self, whole: str) -> int:
        """A UTC time (``2026-11-30T17:54:23``) in microseconds since the epoch; the start of
        each hour is converted once."""
        hour = whole[:13]
        start = self._hours.get(hour)
        if start is None:
            start = self._hours.keep(hour, calendar.timegm(
                datetime.fromisoformat(hour + ":00:00").timetuple()))
        return self._seconds.keep(whole, int(stamp_checked(
            start + int(whole[14:16]) * 60 + int(whole[17:19]))) * 1_000_000)
