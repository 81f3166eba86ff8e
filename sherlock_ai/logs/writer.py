"""How sherlock_ai's own lines reach their readers: one writer, chosen when the configuration
is made, never guessed again per line. A measurement's line (MEMORY, PERFORMANCE,
RESOURCES) goes through :meth:`~ToFiles.write`; every other line of ours (LEAK SUSPECT, the
memory guard's, WORKER DIED, the integrations' warnings) through :meth:`~ToFiles.write_event`,
rendered by the set-up's formatter.

- **Without a set-up** (``sherlock_ai()`` not called): :class:`ToLogging`. Each line is a
  record of ``MonitoringLogger`` or ``PerformanceLogger``, handed to the handlers of
  ``logging`` (``logging.basicConfig``'s, a server's, a test's capture). The first line of a
  process that finds no handler at all says once on stderr what to add, rather than
  vanishing.
- **After** ``sherlock_ai()``: :class:`ToFiles`. The set-up's files and console get the line's
  bytes directly (rendered once, encoded once, one ``os.write`` per file), whatever later
  logging configuration does to the handlers of the loggers (a ``dictConfig`` removes or
  closes them). Whether the line is *also* handed to ``logging``, for handlers that are not
  the set-up's, is ``LoggingConfig.pass_to_logging``, decided by the set-up.

Either way the loggers' levels and ``logging.disable`` are honoured for each line, as
``logging`` does; our two loggers are never ``disabled`` (see :func:`keep_enabled`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, Optional, Tuple

from ..engine.measurement import Measurement
from ..request_id import request_id_var
from ..safety import report_internal_error
from .records import NO_REQUEST_ID, RequestIdRecord
from .render import LineFields, SecondStamp, fields_of, text_line

if TYPE_CHECKING:
    from typing import Protocol

    class LineWriter(Protocol):
        def write(self, logger: logging.Logger, level: int, message: str,
                  fields: Optional[LineFields], measurement: Optional[Measurement]) -> None: ...

        def skipped(self, logger: logging.Logger) -> None: ...

        def write_event(self, logger: logging.Logger, level: int, message: str,
                        args: Tuple[object, ...] = (), event: Optional[Event] = None,
                        pid: Optional[int] = None) -> None: ...

    class Event(Protocol):
        """What an event line carries as ``record.sherlock``: its fields for JSON lines."""

        def as_dict(self) -> Dict[str, Any]: ...

#: Where a line takes its time stamp (``LogRecord`` takes ``time.time()`` too).
clock = time.time
monotonic = time.monotonic
_level_names: Dict[int, str] = logging._levelToName
# Lines of one process are rendered and written under this lock, so each file gets them in
# the order their time stamps were taken. Taken before a handler's own lock, never after.
order_lock = threading.Lock()
_pid = os.getpid()


def keep_enabled(logger: logging.Logger) -> logging.Logger:
    """Make ``logger`` one that ``disabled`` cannot silence: ``logging.config.dictConfig``
    disables every logger that exists when it runs unless told not to (its default,
    ``disable_existing_loggers=True``), and ours exist from ``import sherlock_ai``, so an app's
    ``dictConfig`` (Django's, Celery's, most services') would stop every line without a word.
    Their level, their handlers and ``logging.disable`` still decide as usual."""
    kind = type(logger)
    if not getattr(kind, "_sherlock_ai_enabled", False):
        logger.__class__ = type(kind.__name__, (kind,), {
            "__doc__": kind.__doc__, "_sherlock_ai_enabled": True,
            "disabled": property(lambda self: False, lambda self, value: None)})
    return logger


def measurement_of(level: int, fields: LineFields) -> Measurement:
    """The ``Measurement`` of a line's fields (for a record's ``sherlock`` attribute)."""
    kind, name, status, figures, error, attributes = fields
    return Measurement(kind, name, status, figures[0], level, request_id_var.get(), error,
                       *figures[1:], False, attributes)


def line_fields(fields: Optional[LineFields], measurement: Optional[Measurement]) -> LineFields:
    """A line's fields: ``fields``, or when the line was written with its measurement only
    (``fields=None``), those of the measurement."""
    if fields is not None:
        return fields
    assert measurement is not None, "a line is written with its fields or its measurement"
    return fields_of(measurement)


def make_record(logger: logging.Logger, level: int, message: str,
                fields: Optional[LineFields], measurement: Optional[Measurement]
                ) -> logging.LogRecord:
    """Our line as a record made by logging's record factory, carrying its measurement as
    ``record.sherlock`` and the request's id as ``record.request_id`` whatever the factory."""
    # Made directly rather than through logger.log(): log() looks for its caller, which
    # would name a line of sherlock_ai, and costs as much as the rest of the record.
    record = logging.getLogRecordFactory()(
        logger.name, level, "sherlock_ai", 0, message, (), None,
        measurement.name if measurement is not None else line_fields(fields, None)[1])
    record.sherlock = measurement if measurement is not None else measurement_of(
        level, line_fields(fields, None))
    if not hasattr(record, "request_id"):
        record.request_id = request_id_var.get() or NO_REQUEST_ID
    return record


def make_event_record(logger: logging.Logger, level: int, message: str,
                      args: Tuple[object, ...], event: Optional[Event], pid: Optional[int]
                      ) -> logging.LogRecord:
    """An event line as a record made by logging's record factory: ``record.sherlock`` is
    ``event`` (its fields in a JSON line), ``record.process`` is ``pid`` when given (the pid
    the line is about, such as a dead worker's) and ``record.request_id`` is the request's
    whatever the factory."""
    record = logging.getLogRecordFactory()(
        logger.name, level, "sherlock_ai", 0, message, args, None, None)
    if event is not None:
        record.sherlock = event
    if pid is not None:
        record.process = pid
    if not hasattr(record, "request_id"):
        record.request_id = request_id_var.get() or NO_REQUEST_ID
    return record


def handle(logger: logging.Logger, record: logging.LogRecord,
           skip: FrozenSet[logging.Handler] = frozenset()) -> bool:
    """``logger.handle(record)`` without the handlers in ``skip`` and with each handler
    guarded by a try: a handler whose ``emit`` raises (rather than calling ``handleError``) costs
    only its own output. Returns whether any handler (in ``skip`` or not) was found."""
    passed = logger.filter(record)
    if not passed:
        return True
    if isinstance(passed, logging.LogRecord):  # Python 3.12's filters may replace the record
        record = passed
    found = False
    level = record.levelno
    current: Optional[logging.Logger] = logger
    while current is not None:
        for handler in current.handlers:
            found = True
            if level >= handler.level and handler not in skip:
                try:
                    handler.handle(record)
                # A plain try, not `with internal_errors`: it runs per handler and line.
                except Exception as exc:  # noqa: BLE001 - one handler costs only its output
                    report_internal_error(f"log handler {handler!r}", exc)
        current = current.parent if current.propagate else None
    return found


NO_HANDLER = (
    "sherlock_ai: {logger} has no log handler, so its lines (MEMORY, PERFORMANCE, RESOURCES) "
    "are not shown. Call sherlock_ai.sherlock_ai() once at start-up (console, logs/ files, "
    "request ids in every line), or configure logging, e.g. "
    "logging.basicConfig(level=logging.INFO)\n")


class ToLogging:
    """The writer without a set-up: each line a record handed to ``logging``'s handlers."""

    #: Whether the first line's check for a handler was made (once per process).
    checked = False

    def write(self, logger: logging.Logger, level: int, message: str,
              fields: Optional[LineFields], measurement: Optional[Measurement]) -> None:
        if not ToLogging.checked:
            self.skipped(logger)
        record = make_record(logger, level, message, fields, measurement)
        if not handle(logger, record):
            last = logging.lastResort
            if last is not None and level >= last.level:
                last.handle(record)


    @staticmethod
    def write_event(logger: logging.Logger, level: int, message: str,
                    args: Tuple[object, ...] = (), event: Optional[Event] = None,
                    pid: Optional[int] = None) -> None:
        """Hand an event line (``message % args``) to ``logging``'s handlers, as
        ``logger.log`` would; ``event`` and ``pid``: see :func:`make_event_record`."""
        if logger.isEnabledFor(level):
            record = make_event_record(logger, level, message, args, event, pid)
            if not handle(logger, record):
                last = logging.lastResort
                if last is not None and level >= last.level:
                    last.handle(record)

    @staticmethod
    def skipped(logger: logging.Logger) -> None:
        """A line below the logger's level (most often: the root's default, WARNING, when
        nothing configured logging): the first one of the process says so when no handler
        would have shown it anyway."""
        if not ToLogging.checked:
            ToLogging.checked = True
            if not _has_handler(logger):
                try:
                    sys.stderr.write(NO_HANDLER.format(logger=logger.name))
                except Exception:  # noqa: BLE001 - no stderr (pythonw): nothing to tell
                    pass


def _has_handler(logger: logging.Logger) -> bool:
    current: Optional[logging.Logger] = logger
    while current is not None:
        if current.handlers:
            return True
        current = current.parent if current.propagate else None
    return False


#: One output of a line: the handler, and its ``write_bytes`` when it takes UTF-8 bytes (else
#: ``None``: its ``write`` takes the text).
Output = Tuple[logging.Handler, Optional[Callable[[bytes, float], None]]]
Render = Callable[[float, str, int, str, str, str, int, LineFields], str]


class ToFiles:
    """The set-up's writer: ``outputs`` are, per logger name, the set-up's files and console
    that collect its lines; ``formatter`` is the set-up's format; ``pass_to_logging`` hands
    each line to ``logging`` too, for the handlers that are not in ``ours``; ``json``: the
    format is :class:`~.json_lines.JsonFormatter`'s."""

    def __init__(self, outputs: Dict[str, Tuple[logging.Handler, ...]],
                 formatter: logging.Formatter, json: bool, pass_to_logging: bool,
                 ours: FrozenSet[logging.Handler]) -> None:
        self.outputs: Dict[str, Tuple[Output, ...]] = {
            name: tuple((h, getattr(h, "write_bytes", None)
                         if getattr(h, "encoding", None) == "utf-8" else None) for h in handlers)
            for name, handlers in outputs.items()}
        self.encode = any(write_bytes is not None for targets in self.outputs.values()
                          for _, write_bytes in targets)
        self.formatter = formatter
        self.json = json
        self.pass_to_logging = pass_to_logging
        self.ours = ours
        self.render: Render = self._through_record
        #: The time stamp of the default text format when it is the format (its line is
        #: rendered here, with one f-string), else ``None``.
        self.default_stamp: Optional[SecondStamp] = None
        self.choose_renderer()

    def choose_renderer(self) -> None:
        """Render with the set-up's format from the line's fields, or, when a record factory
        other than the set-up's is installed (the OpenTelemetry exporter's adds trace ids) or
        the format uses fields our lines do not have, by formatting a record made by that
        factory. Called by the set-up and by whatever installs a record factory."""
        formatter = self.formatter
        plain = logging.getLogRecordFactory() is RequestIdRecord
        self.default_stamp = None
        if plain and self.json:
            from .json_lines import json_line

            def render(created: float, name: str, level: int, levelname: str, message: str,
                       request_id: str, pid: int, fields: LineFields) -> str:
                return json_line(created, levelname, name, pid, message, request_id, fields,
                                 "}\n")

            self.render = render
            return
        line = text_line(formatter) if plain else None
        if line is not None:
            self.render = line
            self.default_stamp = line.stamp if line.default else None
        else:
            self.render = self._through_record

    def _through_record(self, created: float, name: str, level: int, levelname: str,
                        message: str, request_id: str, pid: int, fields: LineFields) -> str:
        record = make_record(logging.getLogger(name), level, message, fields, None)
        return self.formatter.format(record) + "\n"

    @staticmethod
    def skipped(logger: logging.Logger) -> None:
        """A line below the logger's level: nothing to do."""

    def write(self, logger: logging.Logger, level: int, message: str,
              fields: Optional[LineFields], measurement: Optional[Measurement]) -> None:
        """Write one line: ``fields`` are what it shows, or ``None`` when ``measurement`` is
        given (read from it only when the format needs more than ``message``)."""
        targets = self.outputs.get(logger.name)
        if targets:
            name = logger.name
            request_id = request_id_var.get() or NO_REQUEST_ID
            # getLevelName()'s own first step, without its call.
            levelname = _level_names.get(level) or logging.getLevelName(level)
            with order_lock:
                created = clock()
                stamp = self.default_stamp
                if stamp is not None:  # TextLine's default format, inline: the common line
                    text = (f"{stamp.text(int(created))} - "
                            f"{request_id} - {name} - {levelname} - {message}\n")
                else:
                    try:
                        text = self.render(created, name, level, levelname, message,
                                           request_id, _pid, line_fields(fields, measurement))
                    except Exception as exc:  # noqa: BLE001 - the line is lost, and said so
                        report_internal_error("rendering a log line", exc)
                        text = ""
                # Encoded once, and one clock read, for every file of the line.
                data = None
                if self.encode and text:
                    try:
                        data = text.encode()  # UTF-8
                    except UnicodeError:
                        pass  # each file's write() reports it as a lost line
                now = monotonic()
                for handler, write_bytes in targets:
                    if level >= handler.level and text:
                        if write_bytes is None or data is None:
                            handler.write(text)  # type: ignore[attr-defined]
                        else:
                            write_bytes(data, now)
        if self.pass_to_logging:
            handle(logger, make_record(logger, level, message, fields, measurement), self.ours)

    def write_event(self, logger: logging.Logger, level: int, message: str,
                    args: Tuple[object, ...] = (), event: Optional[Event] = None,
                    pid: Optional[int] = None) -> None:
        """Write an event line (``message % args``) to the set-up's outputs of ``logger``,
        formatted by the set-up's formatter, and hand it to ``logging`` too when
        ``pass_to_logging``; ``event`` and ``pid``: see :func:`make_event_record`."""
        if not logger.isEnabledFor(level):
            return
        targets = self.outputs.get(logger.name) or ()
        with order_lock:
            record = make_event_record(logger, level, message, args, event, pid)
            try:
                text = self.formatter.format(record) + "\n" if targets else ""
            except Exception as exc:  # noqa: BLE001 - the line is lost, and said so
                report_internal_error("rendering a log line", exc)
                text = ""
            for handler, _ in targets:
                if level >= handler.level and text:
                    handler.write(text)  # type: ignore[attr-defined]
        if self.pass_to_logging:
            handle(logger, record, self.ours)


#: The writer of this process's lines (:func:`use` replaces it).
current: LineWriter = ToLogging()


def use(writer: LineWriter) -> None:
    """Make ``writer`` (a :class:`ToLogging` or :class:`ToFiles`) the writer of every line."""
    global current
    current = writer


def factory_changed() -> None:
    """A record factory was installed: the set-up's writer chooses its renderer again."""
    if isinstance(current, ToFiles):
        current.choose_renderer()


def _before_fork() -> None:
    order_lock.acquire()


def _after_fork_in_parent() -> None:
    order_lock.release()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()
    order_lock._at_fork_reinit()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
