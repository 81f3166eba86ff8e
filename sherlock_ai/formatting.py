"""Human-readable figures and log-safe text."""

from __future__ import annotations

import re
from typing import Optional

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
_SCALES = tuple((1 << 10 * i, unit) for i, unit in enumerate(_UNITS))
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def format_bytes(n: Optional[float]) -> str:
    """``512 MiB -> "512.00MB"``, ``1536 -> "1.50KB"``; 1024 base, negatives keep their ``-``."""
    if n is None:
        return "n/a"
    if n < 0:
        return "-" + format_bytes(-n)
    if not n >= 1024:  # NaN too, as "nanB"; abs() turns -0.0 into 0.0
        return f"{abs(n):.2f}B"
    # The unit from the bit length, not a division loop: this runs twice per log line.
    scale, unit = _SCALES[min((int(n).bit_length() - 1) // 10, 5)]
    return f"{n / scale:.2f}{unit}"


def format_change(n: Optional[float]) -> str:
    """A byte delta with an explicit sign: ``+12.34MB``, ``-1.00KB``, ``+0.00B``."""
    if n is None:
        return "n/a"
    return format_bytes(n) if n < 0 else "+" + format_bytes(n)


def log_safe(text: object, limit: int = 500) -> str:
    """Text that cannot start a new log line: control characters escaped, length bounded."""
    s = str(text)
    if len(s) > limit:
        s = s[:limit] + "...[truncated]"
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def exception_message(exc: BaseException) -> str:
    """``str(exc)``, or the exception's type name when that is empty or cannot be made (a
    ``__str__`` that raises must not cost the measurement that describes it)."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - any failure of the app's __str__ gets the fallback
        return type(exc).__name__
    return text or type(exc).__name__


def exception_summary(exc: BaseException) -> str:
    """``"{type name}: {message}"``, or the type name alone when the exception has no message
    that can be made (see :func:`exception_message`)."""
    name = type(exc).__name__
    message = exception_message(exc)
    return name if message == name else f"{name}: {message}"
