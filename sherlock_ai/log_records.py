"""Request ids on every log record, and the JSON line formatter."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Dict

from .request_id import get_request_id

NO_REQUEST_ID = "-"

_factory_lock = threading.Lock()


class RequestIdFilter(logging.Filter):
    """Give each record passing through a ``request_id`` attribute (``"-"`` when none).

    Attach it to any handler (uvicorn's and gunicorn's included, e.g. through ``dictConfig``
    with ``{"()": "sherlock_ai.RequestIdFilter"}``) to use ``%(request_id)s`` in its format.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = get_request_id() or NO_REQUEST_ID
        return True


def install_request_id_factory() -> None:
    """Make every log record created from now on carry ``request_id`` (idempotent).

    Wraps the current record factory, so other libraries' factories keep working. The id is
    read when the record is created, in the context of the code that logs.
    """
    with _factory_lock:
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
        if getattr(previous, "_sherlock_ai", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.request_id = get_request_id() or NO_REQUEST_ID
            return record

        factory._sherlock_ai = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, ``request_id``, ``trace_id`` and ``span_id`` inside an OpenTelemetry span
    (with its integration installed), the measurement's fields for MEMORY/PERFORMANCE/RESOURCES
    records, and ``exception`` when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        out: Dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
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
