"""The JSON line formatter (loaded when a set-up or a user asks for JSON lines)."""

from __future__ import annotations

import json
import json.encoder
import logging
import math
from datetime import datetime, timezone
from typing import Any, Dict, Tuple

from ..request_id import get_request_id
from .records import NO_REQUEST_ID


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``,
    ``pid`` (the process that wrote it), ``message``, ``request_id``, ``trace_id`` and
    ``span_id`` inside an OpenTelemetry span (with its integration installed), the
    measurement's fields for MEMORY/PERFORMANCE/RESOURCES records, and ``exception`` when the
    record has one."""

    def format(self, record: logging.LogRecord) -> str:
        out: Dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None)
            or get_request_id()
            or NO_REQUEST_ID,
        }
        for key in ("trace_id", "span_id"):  # set by the OpenTelemetry integration
            value = getattr(record, key, None)
            if value and value != NO_REQUEST_ID:
                out[key] = value
        measurement = getattr(record, "sherlock", None)
        if measurement is not None:
            for key, value in measurement.as_dict().items():
                out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        # Line separators that some readers split on are escaped like the other controls.
        text = json.dumps(out, ensure_ascii=False, default=str)
        return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# The direct path's encoder: the same object JsonFormatter writes for one of our records
# (json.dumps with its default separators), assembled from parts rather than from a dict.
_string = json.encoder.encode_basestring  # what ensure_ascii=False uses, in C when available
_seconds: Tuple[int, str] = (-1, "")
_FIXED = ("timestamp", "level", "logger", "pid", "message", "request_id")


def _timestamp(created: float) -> str:
    # datetime.fromtimestamp(created, utc).isoformat(timespec="milliseconds"), the date and
    # time rendered once per second: microseconds rounded half-even, as datetime does.
    global _seconds
    fraction, whole = math.modf(created)
    micro = round(fraction * 1e6)
    second = int(whole)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    cached = _seconds
    if cached[0] != second:
        text = datetime.fromtimestamp(second, tz=timezone.utc).isoformat()
        cached = _seconds = (second, text[:19])  # "2026-12-01T13:11:49"
    return f"{cached[1]}.{micro // 1000:03d}+00:00"


def _value(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False, default=str)


def json_line(created: float, levelname: str, logger: str, pid: int, message: str,
              request_id: str, measurement: Any) -> str:
    """The line :class:`JsonFormatter` writes for a record of ``logger`` made at ``created``
    carrying ``measurement`` (``record.sherlock``) and no exception."""
    parts = [f'{{"timestamp": "{_timestamp(created)}", "level": {_string(levelname)}, '
             f'"logger": {_string(logger)}, "pid": {pid}, "message": {_string(message)}, '
             f'"request_id": {_string(request_id)}']
    for key, value in measurement.as_dict().items():
        if type(key) is not str:
            return _slow_line(created, levelname, logger, pid, message, request_id, measurement)
        if key not in _FIXED:
            parts.append(f"{_string(key)}: {_value(value)}")
    text = ", ".join(parts) + "}"
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text


def _slow_line(created: float, levelname: str, logger: str, pid: int, message: str,
               request_id: str, measurement: Any) -> str:
    record = logging.LogRecord(logger, logging.INFO, "sherlock_ai", 0, message, (), None)
    record.created, record.levelname, record.process = created, levelname, pid
    record.request_id = request_id
    record.sherlock = measurement
    return JsonFormatter().format(record)
