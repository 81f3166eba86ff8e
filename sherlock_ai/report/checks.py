"""What a figure or a name read from the logs must be before the report keeps it: numbers
finite and within bounds, times from 1970 to 9999, names printable. A line that fails is
counted as unreadable and skipped; it never stops the report."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Optional

# Sizes (bytes) within 2**70 either way, durations from 0 to about 31 years, times from
# 1970 to the end of 9999, counts and pids below these.
LARGEST_SIZE = float(2**70)
LONGEST_DURATION = 1e9
EARLIEST, LATEST = 0.0, 253402300799.0
LARGEST_COUNT = 10**15
LARGEST_PID = 10**10
# Names longer than this are cut (ours are at most about 215 characters).
NAME_LIMIT = 1000


def figure(value: Any, limit: float = LARGEST_SIZE, low: Optional[float] = None) -> float:
    """``value`` as a float when it is a number (not a bool, not a text) from ``low``
    (``-limit`` by default) to ``limit``; ``ValueError`` otherwise (NaN, infinities, text)."""
    if type(value) is not float and type(value) is not int:
        raise ValueError(f"not a number: {value!r}")
    number = float(value)
    if not (-limit if low is None else low) <= number <= limit:
        raise ValueError(f"out of bounds: {value!r}")
    return number


def count_of(value: Any) -> Optional[int]:
    """A count (requests, a line number): an int from 0 to :data:`LARGEST_COUNT`, or None."""
    if value is None:
        return None
    if type(value) is not int or not 0 <= value < LARGEST_COUNT:
        raise ValueError(f"not a count: {value!r}")
    return value


def stamp_checked(stamp: float) -> float:
    """``stamp`` (seconds since the epoch) when it falls from 1970 to 9999."""
    if not EARLIEST <= stamp <= LATEST:
        raise ValueError(f"a time outside 1970-9999: {stamp!r}")
    return stamp


# An ISO 8601 time as the report accepts it on every Python: a fraction of any length after
# "." or ",", a zone as "Z" or an offset (Python 3.11's fromisoformat reads these; 3.9 and
# 3.10 read only what isoformat writes).
_ISO = re.compile(r"(\d{4}-\d\d-\d\d(?:[T ]\d\d(?::\d\d(?::\d\d)?)?)?)(?:[.,](\d+))?"
                  r"(Z|[+-]\d\d:?\d\d)?")


def iso_datetime(text: str) -> datetime:
    """``2026-12-01``, ``2026-12-01T10:00``, ``2026-12-01 10:00:00,5``,
    ``2026-12-01T10:00:00.123456789Z``, ``...+0100`` as a datetime (naive without a zone),
    the same on every supported Python; ``ValueError`` for anything else."""
    found = _ISO.fullmatch(text)
    if found is None:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    whole, fraction, zone = found.groups()
    if fraction is not None:
        whole += "." + fraction[:6].ljust(6, "0")
    if zone == "Z":
        zone = "+00:00"
    elif zone is not None and zone[3] != ":":
        zone = zone[:3] + ":" + zone[3:]
    return datetime.fromisoformat(whole + (zone or ""))


def _escape(char: str) -> str:
    code = ord(char)
    return (f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}" if code < 65536
            else f"\\U{code:08x}")


def printable(text: str) -> str:
    """``text`` as the report shows it: characters that are not printable (controls such as
    ESC or CR, format characters such as bidirectional overrides, lone surrogates) as
    ``\\xNN``/``\\uNNNN`` escapes, cut after :data:`NAME_LIMIT` characters with ``...``; no
    terminal, spreadsheet or JSON reader meets a raw control character from the logs."""
    if len(text) > NAME_LIMIT:
        text = text[:NAME_LIMIT] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)
