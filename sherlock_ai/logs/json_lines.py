"""The JSON line formatter (loaded when a set-up or a user asks for JSON lines)."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, Dict

from .records import NO_REQUEST_ID
from ..request_id import get_request_id


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
