"""Request ids on every log record."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

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
