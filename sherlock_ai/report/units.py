"""Figures as the report shows them: three significant digits, no noise digits."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def size(n: Optional[float]) -> str:
    """Bytes in the log lines' 1024-based units, three significant digits: ``765B``,
    ``4.98KB``, ``200KB``, ``0B``; ``-`` for no figure."""
    if n is None:
        return "-"
    value, unit = abs(n), 0
    while value >= 1023.5 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    digits = 0 if value >= 99.95 or unit == 0 else 1 if value >= 9.995 else 2
    text = f"{value:.{digits}f}{_UNITS[unit]}"
    return text if n >= 0 or text.startswith("0B") else "-" + text


def change(n: Optional[float]) -> str:
    """A signed size: ``+4.98KB``, ``-512B``; a change that rounds to nothing is ``0B``."""
    text = size(n)
    return "+" + text if n is not None and n > 0 and text != "0B" else text


def seconds(n: Optional[float]) -> str:
    """A duration: ``15µs``, ``0.4ms``, ``12ms``, ``1.25s``; ``-`` for no figure; ``<1ms`` for
    0 (text lines write durations to the millisecond: 0.000s is under half of one)."""
    if n is None:
        return "-"
    if n == 0:
        return "<1ms"
    if n < 0.00005:
        return f"{n * 1e6:.0f}µs"
    if n >= 0.9995:
        return f"{n:.2f}s"
    ms = n * 1000
    return f"{ms:.1f}ms" if ms < 9.95 else f"{ms:.0f}ms"


def when(stamp: Optional[float]) -> str:
    """A local date and time, ``-`` when not known."""
    return "-" if stamp is None else datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
