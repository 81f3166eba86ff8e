"""``RequestIdFilter`` for Django's own loggers: the id of the request a record is about.

Django logs a 4xx or 5xx response (``django.request``: ``Not Found: /x``) after the middleware
chain returned, where no request id is current any more, and its development server logs each
access line (``django.server``) after the response was sent. The middleware leaves the id in
``request.META``; this filter finds it there: in the record's ``request`` (``django.request``,
``django.security.*``), else in the WSGI environ of the development server's handler that is
logging. Imports no Django.
"""

from __future__ import annotations

import logging
import sys
from types import FrameType
from typing import Any, Optional

from ...logs.records import RequestIdFilter as _CurrentIdFilter
from ...request_id import is_valid_request_id
from ..keys import REQUEST_ID_KEY

# Frames between the filter and the development server's handler (log_message, log_request,
# close): a few; bounded so that a record logged deep in other code costs little.
_FRAMES = 12


class RequestIdFilter(_CurrentIdFilter):
    """Give each record a ``request_id`` attribute: the id of the request it is about (see the
    module docstring), else the current request's, else ``"-"``; a ``request_id`` the logging
    call passed (``extra=``) is kept.

    Reference it from ``LOGGING`` by its dotted path, on the loggers or handlers whose format
    shows ``%(request_id)s``::

        "filters": {"request_id": {"()": "sherlock_ai.integrations.django.RequestIdFilter"}},
    """

    def filter(self, record: logging.LogRecord) -> bool:
        values = record.__dict__
        if "request_id" not in values and "request" in values:
            found = _id_of_request(values["request"])
            if found is None:
                found = _id_being_served()
            if found is not None:
                values["request_id"] = found
        return super().filter(record)


def _id_of_request(request: Any) -> Optional[str]:
    meta = getattr(request, "META", None)
    found = meta.get(REQUEST_ID_KEY) if isinstance(meta, dict) else None
    return found if isinstance(found, str) else None


def _id_being_served() -> Optional[str]:
    """The id in the environ of the WSGI handler up the stack (Django's development server logs
    its access line from the handler's ``close()``, while its environ is still set)."""
    frame: Optional[FrameType] = sys._getframe(2)
    for _ in range(_FRAMES):
        if frame is None:
            return None
        environ = getattr(frame.f_locals.get("self"), "environ", None)
        if isinstance(environ, dict):
            found = environ.get(REQUEST_ID_KEY)
            return found if is_valid_request_id(found) else None
        frame = frame.f_back
    return None
