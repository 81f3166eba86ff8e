"""The JSON line formatter (loaded when a set-up or a user asks for JSON lines)."""

from __future__ import annotations

import json
import json.encoder
import logging
from datetime import datetime, timezone
from typing import Any, Dict, Optional, Tuple

from ..bounded import BoundedCache
from ..engine.measurement import Measurement
from ..request_id import get_request_id
from .records import NO_REQUEST_ID
from .render import LineFields, SecondStamp, fields_of


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``,
    ``pid`` (the process that wrote it), ``message``, ``request_id``, ``trace_id`` and
    ``span_id`` inside an OpenTelemetry span (with its integration installed), the
    measurement's fields for MEMORY/PERFORMANCE/RESOURCES records, and ``exception`` when the
    record has one."""

    def format(self, record: logging.LogRecord) -> str:
        measurement = getattr(record, "sherlock", None)
        if type(measurement) is Measurement and not record.exc_info and not _traced(record):
            # One of our records: the same line, from parts (see json_line).
            request_id = getattr(record, "request_id", None) or get_request_id() or NO_REQUEST_ID
            if (type(request_id) is str and type(record.process) is int
                    and type(record.name) is str and type(record.levelname) is str):
                return json_line(record.created, record.levelname, record.name, record.process,
                                 record.getMessage(), request_id, fields_of(measurement))
        return self.generic(record)

    def generic(self, record: logging.LogRecord) -> str:
        """The line from a dict of every field, through ``json.dumps``."""
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


def _traced(record: logging.LogRecord) -> bool:
    """Whether the record carries an OpenTelemetry trace or span id to write."""
    values = record.__dict__
    return any(values.get(key) and values.get(key) != NO_REQUEST_ID
               for key in ("trace_id", "span_id"))


# The JSON renderer of our lines: the same object JsonFormatter.generic writes for one of our
# records (json.dumps with its default separators), assembled from parts rather than a dict.
_string = json.encoder.encode_basestring  # what ensure_ascii=False uses, in C when available
# "2026-12-01T13:11:49": the date and time of a second.
_stamp = SecondStamp(lambda second: datetime.fromtimestamp(second, tz=timezone.utc)
                     .isoformat()[:19])
_FIXED = frozenset(("timestamp", "level", "logger", "pid", "message", "request_id"))
_OPTIONAL = ("error", "rss", "rss_change", "traced", "traced_peak")
# The keys Measurement.as_dict() writes before its attributes.
_BASE = frozenset(("kind", "name", "status", "duration", "concurrent", *_OPTIONAL))


def _value(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return _string(value)
    if kind is float and value - value == 0:  # finite: json writes nan and inf otherwise
        return float.__repr__(value)
    if value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False, default=str)


# Texts kept for the next lines (route names are few; never unbounded).
_parts: BoundedCache[Tuple[str, str, int, str, str, str], Tuple[str, str]] = BoundedCache()
_keys: BoundedCache[str, str] = BoundedCache()


def json_line(created: float, levelname: str, logger: str, pid: int, message: str,
              request_id: str, fields: LineFields, end: str = "}") -> str:
    """The line :class:`JsonFormatter` writes for a record of ``logger`` made at ``created``
    carrying a measurement of these ``fields`` (see :func:`~.render.fields_of`) and no
    exception; ``end`` closes the object (the line writer adds the newline there)."""
    # Long, and inlined on purpose: it runs once per JSON line on the request path, where a
    # helper call per field is a measurable share of the line's cost.
    kind, name, status, figures, error, attributes = fields
    if attributes and not _BASE.isdisjoint(attributes):
        # An attribute replaces one of as_dict()'s own figures: let as_dict() decide.
        return _slow_line(created, levelname, logger, pid, message, request_id, fields) + end[1:]
    string = _string
    key = (levelname, logger, pid, kind, name, status)
    parts = _parts.get(key)
    if parts is None:
        parts = _parts.keep(key, (
            f'"level": {string(levelname)}, "logger": {string(logger)}, "pid": {pid}, ',
            f'"kind": {string(kind)}, "name": {string(name)}, "status": {string(status)}, '))
    # The time stamp of datetime.fromtimestamp(created, utc).isoformat(timespec=
    # "milliseconds"), the date and time rendered once per second. datetime rounds to the
    # microsecond half-even (created - second is exact in floating point), which changes the
    # millisecond only from ...999.5 up: only then round() it.
    second = int(created)
    micro = int(fraction := (created - second) * 1e6)
    if micro % 1000 == 999:
        micro = round(fraction)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
    duration, rss, change, traced, traced_peak, concurrent = figures
    duration = round(duration, 6)
    # _value() inline for the finite float a duration is.
    duration_text = (float.__repr__(duration) if type(duration) is float
                     and duration - duration == 0 else _value(duration))
    text = (f'{{"timestamp": "{_stamp.text(second)}.{micro // 1000:03d}+00:00", {parts[0]}'
            f'"message": {string(message)}, "request_id": {string(request_id)}, {parts[1]}'
            f'"duration": {duration_text}, "concurrent": '
            f'{concurrent if type(concurrent) is int else _value(concurrent)}')
    if error is not None:
        text += f', "error": {_value(error)}'
    if type(rss) is int and type(change) is int:  # both read, as nearly always
        text += f', "rss": {rss}, "rss_change": {change}'
    else:
        if rss is not None:
            text += f', "rss": {_value(rss)}'
        if change is not None:
            text += f', "rss_change": {_value(change)}'
    if traced is not None:
        text += f', "traced": {_value(traced)}'
    if traced_peak is not None:
        text += f', "traced_peak": {_value(traced_peak)}'
    if attributes:
        # Requests repeat their attributes (method, route, status code): their text is kept
        # when every value is a str, an int or None (values of those types are equal only
        # when their text is).
        if _PLAIN.issuperset(map(type, attributes.values())):
            items = tuple(attributes.items())
            tail = _tails.get(items)
            if tail is None:
                tail = _attributes_text(attributes)
                if tail is None:
                    return _slow_line(created, levelname, logger, pid, message, request_id,
                                      fields) + end[1:]
                _tails.keep(items, tail)
        else:
            tail = _attributes_text(attributes)
            if tail is None:
                return _slow_line(created, levelname, logger, pid, message, request_id,
                                  fields) + end[1:]
        text += tail
    text += end
    if "\u2028" in text or "\u2029" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text


_PLAIN = frozenset((str, int, type(None)))
_tails: BoundedCache[Tuple[Tuple[Any, Any], ...], str] = BoundedCache()


def _attributes_text(attributes: Dict[str, Any]) -> Optional[str]:
    """The attributes' part of the line (``None``: a key that is not a string, for
    ``json.dumps`` to decide)."""
    text = ""
    for key, item in attributes.items():
        if type(key) is not str:
            return None
        if key not in _FIXED:
            quoted = _keys.get(key) or _keys.keep(key, f", {_string(key)}: ")
            kind = type(item)
            text += quoted + (_string(item) if kind is str else f"{item}" if kind is int
                              else _value(item))
    return text


def _slow_line(created: float, levelname: str, logger: str, pid: int, message: str,
               request_id: str, fields: LineFields) -> str:
    kind, name, status, figures, error, attributes = fields
    record = logging.LogRecord(logger, logging.INFO, "sherlock_ai", 0, message, (), None)
    record.created, record.levelname, record.process = created, levelname, pid
    record.request_id = request_id
    record.sherlock = Measurement(kind, name, status, figures[0], logging.INFO, request_id,
                                  error, *figures[1:], False, attributes)
    return JsonFormatter().generic(record)
